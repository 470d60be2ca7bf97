"""What `AFTTrainer` is given, checked before any teacher runs, in the words `hf-aft train` uses where it has them:
the config and the student, each dataset one split (`dataset_types`), prepared for the student (tokenized, or an
image column), and labels the student's head can train on (its problem type: class ids, multi-hot rows, finite
regression targets; a missing label named by its row). Labels are read as transformers reads them: a student of one
output given float labels is a regression (its config then says so), lists of class names are encoded to multi-hot
rows for a multi-label student, as `hf-aft train` encodes them."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .class_sets import align_class_ids, class_label_names
from .config import AFTConfig
from .data import arrow_column, check_no_missing, first_row
from .dataset_types import check_one_split, is_one_split
from .errors import AFTError
from .features import TeacherInfo
from .metrics import RecordedMetrics, compute_classification_metrics
from .option_checks import check_idle_config, check_pool_read
from .student import check_labels_fit, name_classes, name_labels
from .targets import MULTI, REGRESSION, SINGLE, MultiLabels, RegressionTargets, is_token_model, model_problem_type
from .teachers.loading import token_limit


def eval_sets(eval_dataset) -> dict:
    """The eval sets by the name refusals give them: "eval", or "eval (KEY)" of a dict of them."""
    if eval_dataset is None:
        return {}
    if isinstance(eval_dataset, dict):
        return {f"eval ({key})": value for key, value in eval_dataset.items()}
    return {"eval": eval_dataset}


NO_HYPERPARAMETER_SEARCH = (
    "AFTTrainer takes model=, not model_init, so Trainer.hyperparameter_search does not run on it: its teacher "
    "features, transfer loss and feature hooks are built for one student. To choose beta use hf_aft.search_beta("
    "model_init, args, train_dataset); for other hyperparameters make one AFTTrainer per trial (an optuna objective "
    "that builds the student, trains and returns trainer.evaluate()[...]: docs/guides/choosing-beta.md).")


def check_trainer_inputs(model, args, train_dataset, unlabeled_dataset=None, eval_dataset=None,
                         model_init=None) -> AFTConfig:
    """The config (a default one when None), after refusing what no training run can use: a dataset that is not
    one split (a `datasets.Dataset`; an eval set may also be a stream, or a dict of them), an empty or too small
    training set, a pool no term reads (as `hf-aft train` refuses it), `model_init` (see NO_HYPERPARAMETER_SEARCH)."""
    if args is None:
        args = AFTConfig(output_dir="aft_output")
    elif not isinstance(args, AFTConfig):
        raise AFTError("AFTTrainer needs an AFTConfig (it holds beta, transfer, teachers...), not "
                       f"{type(args).__name__}.")
    if model_init is not None:
        raise AFTError(NO_HYPERPARAMETER_SEARCH)
    if model is None:
        raise AFTError("AFTTrainer needs a student model (model=...).")
    if not isinstance(model, torch.nn.Module):
        raise AFTError(f"AFTTrainer's model must be the student itself (a transformers model), not "
                       f"{type(model).__name__}: load it first, e.g. model, tokenizer = hf_aft.load_student(path, "
                       "labels).")
    if train_dataset is not None:
        check_one_split(train_dataset, "train_dataset", "train_dataset=data['train']")
    if isinstance(eval_dataset, dict) and not any(
            isinstance(v, (datasets.Dataset, datasets.IterableDataset)) for v in eval_dataset.values()):
        check_one_split(eval_dataset, "eval_dataset", "")  # a dict of columns, not of eval sets
    for name, eval_set in eval_sets(eval_dataset).items():
        if not isinstance(eval_set, datasets.IterableDataset):  # Trainer evaluates a stream as it is
            check_one_split(eval_set, name.replace("eval", "eval_dataset", 1), "eval_dataset=data['test']")
    if train_dataset is not None and len(train_dataset) == 0:
        raise AFTError("the training dataset is empty.")
    if train_dataset is not None and len(train_dataset) < 3 and args.transfer in ("aft", "rkd"):
        raise AFTError(f"transfer={args.transfer!r} compares examples within a batch: it needs at least 3 "
                       "training examples (2 centred rows are the same pair for any input).")
    if unlabeled_dataset is not None:
        check_one_split(unlabeled_dataset, "unlabeled_dataset", "unlabeled_dataset=pool['train']")
        if len(unlabeled_dataset) == 0:
            raise AFTError("the unlabelled dataset is empty: give unlabelled rows, or pass none.")
        check_pool_read(args)
    check_idle_config(args, unlabeled_dataset is not None)  # as hf-aft train refuses them, in the flags' names
    if args.distill == "logits" and not args.distill_teacher:
        raise AFTError("distill='logits' needs distill_teacher: a classifier tuned for the same labels.")
    return args


def check_teacher_infos(teacher_infos) -> None:
    """`teacher_infos`, when given (None or empty: read from the dataset), is a list of `features.TeacherInfo`: else
    a raw error deep in the feature scan."""
    if teacher_infos is None or isinstance(teacher_infos, (list, tuple)) and not teacher_infos:
        return
    wrong = next((f"a list holding {type(i).__name__}" for i in teacher_infos if not isinstance(i, TeacherInfo)),
                 None) if isinstance(teacher_infos, (list, tuple)) else type(teacher_infos).__name__
    if wrong is not None:
        raise AFTError(f"teacher_infos must be a list of TeacherInfo, not {wrong}: leave it None to read them from "
                       "the dataset (hf_aft.read_teacher_infos(train_dataset) shows them).")


def check_student_inputs(model, sets: dict) -> None:
    """Each dataset (name -> set) holds the student's input (`model.main_input_name`: `input_ids` for text), when no
    image column or collator of the user's makes it per batch: an untokenized set fails at the first step otherwise,
    after the teachers ran (or, for an eval set, at the first evaluation)."""
    needed = getattr(model, "main_input_name", None) or "input_ids"
    for name, dataset in sets.items():
        if is_one_split(dataset) and needed == "input_ids" in dataset.column_names:
            check_token_room(model, dataset, name)
        if not is_one_split(dataset) or needed in dataset.column_names:
            continue
        way = (f"tokenize it for the student: hf_aft.tokenize_beside_features({name}, tokenizer) (the teachers read "
               "the text column, the student its tokens)" if needed == "input_ids" else
               "pass image_column=... to have the student's processor make it per batch")
        raise AFTError(f"{name} has no {needed!r} column, the student's input (it has {dataset.column_names}): "
                       f"{way}.")


def check_token_room(model, dataset: datasets.Dataset, name: str) -> None:
    """No row holds more tokens than the student's position table: a tokenizer without a real `model_max_length`
    leaves long texts whole, and the student failed at the first step with a raw size mismatch."""
    limit = token_limit(getattr(model, "config", None))
    if limit is None or not len(dataset):
        return
    longest = pc.max(pc.list_value_length(arrow_column(dataset, "input_ids"))).as_py() or 0
    if longest > limit:
        raise AFTError(f"{name} has rows of {longest} tokens, and the student takes at most {limit} (its position "
                       f"table): tokenize with max_length={limit} or less (hf_aft.tokenize_beside_features(..., "
                       f"max_length={limit})).")


def label_column(dataset) -> str | None:
    """The label column a dataset gives the student (`labels`, else `label`), or None."""
    columns = dataset.column_names if is_one_split(dataset) else ()
    return next((c for c in ("labels", "label") if c in columns), None)


def check_label_columns(args, sets: dict) -> None:
    """Each set (split name -> dataset, or stream whose columns are known) has a label column (`labels` or `label`;
    the columns `args.label_names` names when set): the training set's task loss needs it, and an eval set without
    one evaluates to no loss and no metrics, silently."""
    for split, dataset in sets.items():
        columns = set(getattr(dataset, "column_names", None) or ())
        if not columns:
            continue
        if args.label_names and not set(args.label_names) <= columns | ({"labels"} if "label" in columns else set()):
            raise AFTError(f"the {split} set has no {', '.join(map(repr, args.label_names))} column (label_names; "
                           f"it has {sorted(columns)}): add it, or leave label_names unset for 'label'/'labels'.")
        if {"label", "labels"} <= columns and not args.label_names:
            raise AFTError(f"the {split} set has both 'label' and 'labels' columns: transformers' collator trains on "
                           "'label' in place of 'labels'; drop the one that is not the student's labels.")
        if not columns & {"label", "labels"} and not args.label_names:
            raise AFTError(f"the {split} set has no 'label' or 'labels' column (it has {sorted(columns)}): the "
                           "student reads its labels from one of those: rename yours (dataset.rename_column('NAME', "
                           "'label')), or encode the targets (splits.labels.encode(dataset)); rows without labels go "
                           "in unlabeled_dataset.")


def read_like_transformers(model, train_dataset) -> None:
    """A student of one output whose config names no problem type, given float labels, is a regression, as
    transformers reads it at the first forward pass: its config says so now, so that every step (the probe, the
    metrics, the card) treats it as one."""
    config, column = getattr(model, "config", None), label_column(train_dataset)
    if config is None or column is None or getattr(config, "problem_type", None) or is_token_model(model):
        return
    feature = train_dataset.features[column]
    if config.num_labels == 1 and isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        config.problem_type = REGRESSION


def encode_class_lists(model, train_dataset, eval_dataset):
    """A multi-label student given lists of class names (or a `Sequence(ClassLabel)`) per row: the lists encoded to
    multi-hot rows in the order of the sorted names, as `hf-aft train` encodes them, and the student's classes named.
    Returns the (train, eval) datasets."""
    column = label_column(train_dataset)
    if column is None or model_problem_type(model) != MULTI:
        return train_dataset, eval_dataset
    inner = getattr(train_dataset.features[column], "feature", None)
    if not (isinstance(inner, datasets.ClassLabel) or getattr(inner, "dtype", None) in ("string", "large_string")):
        return train_dataset, eval_dataset
    labels = MultiLabels.from_dataset(train_dataset, column)
    name_classes(model, labels.names)
    evals = {key: labels.encode(value, "eval") if is_one_split(value) else value
             for key, value in (eval_dataset.items() if isinstance(eval_dataset, dict) else [(None, eval_dataset)])}
    return labels.encode(train_dataset), evals if isinstance(eval_dataset, dict) else evals[None]


def check_label_values(model, dataset, split: str) -> None:
    """The labels of one set (`split` names it: "training", "eval") are what the student's problem type trains on:
    no missing label, class ids (not floats or lists) for a classifier, a multi-hot row of `num_labels` finite
    numbers for a multi-label one, finite targets for a regression (the first bad row named)."""
    column = label_column(dataset)
    if column is None or is_token_model(model):  # token labels: words.py's checks
        return
    problem, feature = model_problem_type(model), dataset.features[column]
    if problem == REGRESSION:
        inner = getattr(feature, "feature", None) is not None
        outputs = [str(i) for i in range(len(dataset[0][column] or ()))] if inner else None
        return RegressionTargets(column, outputs=outputs).check_split(dataset, split)
    if problem == MULTI:
        return _check_multi_hot(dataset, column, split, model.config.num_labels)
    if problem == SINGLE:
        _check_class_ids(dataset, column, split, model.config.num_labels)


def check_target_scale(metrics, sets: dict) -> None:
    """With `compute_metrics_for(targets)` of standardised regression targets, each set's targets (split name ->
    dataset) are standardised as `targets.encode` makes them: the metrics undo the standardisation, so targets left in
    the data's units would be scaled twice (an MAE of thousands for a student ten off). Refused where a set's mean
    and spread are clearly nearer the data's (the training split's mean and std) than standardised ones (0 and 1);
    where the two are alike, so are the metrics."""
    targets = getattr(metrics, "targets", None)
    if not isinstance(targets, RegressionTargets) or not targets.standardize:
        return
    mean, std = np.asarray(targets.mean, dtype=np.float64), np.asarray(targets.std, dtype=np.float64)
    for split, dataset in sets.items():
        column = label_column(dataset) if is_one_split(dataset) else None
        if column is None or len(dataset) == 0:
            continue
        values = np.asarray(dataset[column], dtype=np.float64).reshape(len(dataset), -1)
        m, s = values.mean(0), values.std(0) if len(values) > 1 else None
        as_encoded, as_data = np.abs(m), np.abs((m - mean) / std)
        if s is not None:
            tiny = np.finfo(np.float64).tiny
            as_encoded, as_data = as_encoded + np.abs(np.log(s + tiny)), as_data + np.abs(np.log((s + tiny) / std))
        if np.any(as_data + 1 < as_encoded):
            raise AFTError(f"the {split} set's targets in {column!r} are in the data's units (mean "
                           f"{np.round(m, 4).tolist()}), not standardised as compute_metrics_for(targets) expects "
                           "(it undoes the standardisation: they would be scaled twice): pass targets.encode(dataset) "
                           "(e.g. splits.labels.encode(splits.eval)), as for the training set.")


def _check_class_ids(dataset, column: str, split: str, num_labels: int) -> None:
    feature = dataset.features[column]
    if getattr(feature, "feature", None) is not None:
        raise AFTError(f"the {split} split's labels in {column!r} are lists ({feature}) but the student is a "
                       "single-label classifier: load it with problem_type='multi_label_classification' (lists of "
                       "classes per row), or 'regression' with num_labels per row (several targets).")
    check_no_missing(dataset, column, split, "label")
    if isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        raise AFTError(f"the {split} split's labels in {column!r} are floats ({feature.dtype}) but the student "
                       f"classifies into num_labels={num_labels} classes: cast them to class ids "
                       f"(dataset.cast_column({column!r}, datasets.Value('int64'))), or, for a regression target, "
                       "load the student with num_labels=1 (problem_type='regression').")


def _check_multi_hot(dataset, column: str, split: str, num_labels: int) -> None:
    values = arrow_column(dataset, column)
    lists = pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or \
        pa.types.is_fixed_size_list(values.type)
    if lists and pa.types.is_floating(values.type.value_type):
        lengths = pc.list_value_length(values)
        bad = pc.or_kleene(pc.is_null(lengths), pc.not_equal(lengths, num_labels))
        row = first_row(bad)
        if row is None:
            flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)
            offsets = np.cumsum(lengths.to_numpy(zero_copy_only=False))
            wrong = np.flatnonzero(~np.isfinite(flat))
            row = int(np.searchsorted(offsets, wrong[0], side="right")) if wrong.size else None
        if row is None:
            return
    else:
        row = 0
    raise AFTError(f"the {split} split's label column {column!r} does not hold a multi-hot row of num_labels="
                   f"{num_labels} finite floats at row {row} ({dataset[row][column]!r}): a multi-label student reads "
                   "one such row per example; give lists of class names (encoded for you) or such rows, or drop the "
                   "row.")


def checked_trainer_inputs(model, args, train_dataset, eval_dataset=None, unlabeled_dataset=None,
                           image_column: str | None = None, trainer_kwargs: dict | None = None, teacher_infos=None):
    """`AFTTrainer`'s inputs, checked before anything runs (see the module's docstring). Returns (args,
    train_dataset, eval_dataset): labels given as names encoded to what the student reads. `trainer_kwargs`: the
    rest of its arguments: a user's `data_collator` may make the student's inputs itself; `compute_metrics`.

    Raises:
        AFTError: see `check_trainer_inputs`, `check_student_inputs`, `check_label_values`, `check_teacher_infos`;
            labels outside the student's head (`student.check_labels_fit`); single-label metrics for another student.
    """
    collator, metrics = (trainer_kwargs or {}).get("data_collator"), (trainer_kwargs or {}).get("compute_metrics")
    if (metrics is compute_classification_metrics or isinstance(metrics, RecordedMetrics)) and model is not None \
            and model_problem_type(model) != SINGLE:  # else found only at the first evaluation, after training
        raise AFTError(f"compute_metrics=compute_classification_metrics scores single-label students, and this one "
                       f"is a {model_problem_type(model)} student: pass compute_metrics=compute_metrics_for(labels) "
                       "(the Labels or targets of load_labelled_splits).")
    if (trainer_kwargs or {}).get("compute_loss_func") is not None:  # Trainer's hook: never called here
        raise AFTError("AFTTrainer computes its own loss (the task loss of the labelled rows + beta * transfer + the "
                       "distillation term): compute_loss_func would be ignored; subclass AFTTrainer and override "
                       "compute_loss to change it.")
    args = check_trainer_inputs(model, args, train_dataset, unlabeled_dataset, eval_dataset,
                                (trainer_kwargs or {}).get("model_init"))
    check_teacher_infos(teacher_infos)
    check_label_columns(args, {"training": train_dataset, **eval_sets(eval_dataset)})
    if image_column is None and collator is None:  # else the user's collator (or the images') makes the inputs
        check_student_inputs(model, {"train_dataset": train_dataset, "unlabeled_dataset": unlabeled_dataset,
                                     **{name.replace("eval", "eval_dataset", 1): value
                                        for name, value in eval_sets(eval_dataset).items()}})
    read_like_transformers(model, train_dataset)
    if args.label_smoothing_factor and model_problem_type(model) in (MULTI, REGRESSION):  # also one read as such
        raise AFTError(f"label_smoothing_factor={args.label_smoothing_factor} smooths a cross-entropy over classes; "
                       f"this student is a {model_problem_type(model)} one (binary cross-entropy or squared error): "
                       "set it to 0.")
    train_dataset, eval_dataset = name_labels(model, train_dataset, eval_dataset)
    train_dataset, eval_dataset = encode_class_lists(model, train_dataset, eval_dataset)
    for split, dataset in {"training": train_dataset, **eval_sets(eval_dataset)}.items():
        if is_one_split(dataset):
            check_label_values(model, dataset, split)
            try:
                check_labels_fit(dataset, model)
            except AFTError as error:
                if split == "training":
                    raise
                raise AFTError(f"the {split} split: {error}") from error
    check_target_scale(metrics, {"training": train_dataset, **eval_sets(eval_dataset)})
    return args, train_dataset, eval_dataset


class LaterEvalSets:
    """`evaluate(eval_dataset=...)` and `predict(test_dataset)` given after the trainer was built: a ClassLabel that
    orders the classes otherwise has its ids mapped to the training set's by name, as the constructor's eval sets
    are (`class_sets.align_class_ids`); else each id is scored as another class."""

    def get_eval_dataloader(self, eval_dataset=None):
        return super().get_eval_dataloader(self._aligned(eval_dataset, "eval"))

    def get_test_dataloader(self, test_dataset):
        return super().get_test_dataloader(self._aligned(test_dataset, "test"))

    def _aligned(self, dataset, split: str):
        column = label_column(self.train_dataset) if self.train_dataset is not None else None
        if column is None or not isinstance(dataset, datasets.Dataset) or column not in dataset.column_names:
            return dataset
        names = class_label_names(self.train_dataset.features[column])
        return align_class_ids(dataset, column, names, split) if names else dataset
