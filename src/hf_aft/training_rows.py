"""The rows an `AFTTrainer` trains on, made before the first step: labelled rows and, optionally, unlabelled ones,
each with its teacher features (features.py, the one path), its distillation target (distillation.py) when a
distillation term is on, and one joined dataset that `unlabeled.MixedSampler` draws mixed batches from.

Also the task loss of a mixed batch (labelled rows only) and the summary of those terms that the card, the run
summary and `transfer_summary.json` print.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .augmentation import augmented_rows, held_out_texts, join_unlabeled
from .config import AFTConfig
from .distillation import TARGETS_COLUMN, probe_targets, task_teacher_targets, with_targets
from .errors import AFTError
from .feature_dataset import check_same_teachers
from .features import FEATURES_COLUMN, TeacherInfo, scan_teacher_features, teacher_infos_of
from .generation import generated_rows
from .images import check_image_column
from .losses import distillation_loss
from .provenance import current_revision
from .targets import MULTI, REGRESSION, SINGLE, TOKEN, model_problem_type
from .task_options import check_supported
from .unlabeled import UNLABELED, MixedSampler, join_labelled_unlabeled, say_repeats
from .unlabeled_data import check_trainer_pool
from .word_batches import word_pairs
from .word_distillation import with_word_targets, word_probe_targets
from .word_features import is_word_features, scan_word_features, with_word_or_teacher_features
from .words import WORD_POSITIONS

logger = logging.getLogger(__name__)


@dataclass
class TrainingRows:
    """What `prepare_training_rows` made: the dataset Trainer reads and what the other steps need to know of it."""

    dataset: object
    distill: str  # "probe", "logits" or "none" (AFTConfig.resolved_distill)
    n_labeled: int
    n_unlabeled: int = 0  # the unlabelled rows given and the augmented copies
    n_augmented: int = 0
    n_generated: int = 0  # texts written by `generator` (generation.py) at `generator_revision`
    generator: str | None = None
    generator_revision: str | None = None
    distill_teacher_revision: str | None = None  # what `--distill_teacher` resolved to (distill "logits")
    augmented_from: str = "texts"  # or "images"
    teacher_infos: list[TeacherInfo] = field(default_factory=list)
    teacher_norms: list[float] = field(default_factory=list)
    probe_accuracy: float | None = None  # the probe's cross-validated score, in `probe_metric`
    probe_metric: str = "accuracy"
    probe_c: float | None = None  # the probe's chosen inverse L2 strength (the cost report reuses it)
    probe_scored: int | None = None  # the labelled rows (words) scored: a class of one row is not cross-fitted
    problem_type: str = SINGLE

    def mixed_sampler(self, args: AFTConfig) -> MixedSampler | None:
        """The sampler of mixed batches (None without unlabelled rows: Trainer's own then)."""
        if not self.n_unlabeled:
            return None
        seed = args.data_seed if args.data_seed is not None else args.seed
        say_repeats(self.n_labeled, self.n_unlabeled, args.labeled_fraction)
        return MixedSampler(self.n_labeled, self.n_unlabeled, args.labeled_fraction, seed)


def as_labels(dataset):
    """The label column under the name the model reads, `labels` (a `label` column is renamed, as transformers'
    collators do)."""
    if dataset is not None and "labels" not in dataset.column_names and "label" in dataset.column_names:
        info = dataset.info.description
        dataset = dataset.rename_column("label", "labels")
        dataset.info.description = info
    return dataset


def prepare_training_rows(model, args: AFTConfig, train_dataset, unlabeled_dataset=None, text_column="text",
                          image_column=None, teacher_infos=None, tokenizer=None, eval_dataset=None) -> TrainingRows:
    """Teacher features for both sets (when a term needs them), distillation targets, then the labelled rows
    followed by the unlabelled ones (labels -100) in one dataset. `args.augment_copies` adds the labelled rows'
    augmented copies (augmentation.py), `args.generate_texts` texts a generator writes (generation.py), to the
    unlabelled rows; no made text equals a text of `eval_dataset`. Unlabelled rows that are also eval or labelled
    rows are refused first, in `hf-aft train`'s words (before any teacher or generator runs)."""
    check_supported(model_problem_type(model), "the student's config.problem_type", distill_logits=args.distill ==
                    "logits", distill_temperature=args.distill_temperature != 1.0)  # as train_student refuses them
    if image_column is not None and unlabeled_dataset is not None:
        try:
            check_image_column(unlabeled_dataset, image_column)
        except AFTError as error:  # said of the pool, not of the training data
            raise AFTError(f"unlabeled_dataset: {error}") from error
    check_trainer_pool(unlabeled_dataset, train_dataset, eval_dataset, image_column or text_column)
    held_out = held_out_texts(eval_dataset, text_column)
    augmented = (augmented_rows(train_dataset, args.augment_copies, args.seed, tokenizer, text_column, image_column,
                                held_out) if args.augment_copies else None)
    generated, generator_revision = (
        generated_rows(train_dataset, args, tokenizer, text_column, image_column, held_out) if args.generate_texts
        else (None, None))
    augmented = join_unlabeled(augmented, generated)  # the rows made from the labelled ones
    has_unlabeled = unlabeled_dataset is not None or augmented is not None
    rows = TrainingRows(None, args.resolved_distill(has_unlabeled), len(train_dataset),
                        len(unlabeled_dataset or ()) + len(augmented or ()),
                        n_augmented=len(augmented or ()) - len(generated or ()), n_generated=len(generated or ()),
                        generator=args.generator if generated else None, generator_revision=generator_revision,
                        augmented_from="images" if image_column else "texts", problem_type=model_problem_type(model))
    if args.needs_teacher_features(has_unlabeled):
        train_made = FEATURES_COLUMN not in train_dataset.column_names
        train_dataset, unlabeled_dataset = with_pool_features(train_dataset, unlabeled_dataset, args, text_column,
                                                              image_column, device=args.device)
        rows.teacher_infos = teacher_infos or teacher_infos_of(train_dataset)
        scan = scan_word_features if is_word_features(train_dataset) else scan_teacher_features
        rows.teacher_norms = scan(train_dataset, rows.teacher_infos)
        if augmented is not None:  # made here, with this command's teacher options
            if not args.teachers:  # features stored beside the labelled rows cannot cover rows made now
                raise AFTError("the rows this run makes (--augment_copies, --generate_texts) need the teachers to "
                               "make their features: pass --teachers (AFTConfig(teachers=[...]) in Python).")
            augmented = with_word_or_teacher_features(augmented, args, text_column, image_column, device=args.device,
                                                      name="augmented rows")
            check_same_teachers(train_dataset, augmented, "the augmented rows'", made_here=made_here(train_made, True))
        for part in (unlabeled_dataset, augmented):
            if part is not None:
                scan(part, rows.teacher_infos)
    unlabeled_dataset = join_unlabeled(unlabeled_dataset, augmented)
    targets = _targets_or_fallback(rows, model, args, train_dataset, unlabeled_dataset, text_column, image_column)
    if targets is not None:
        attach = with_word_targets if rows.problem_type == TOKEN else with_targets
        train_dataset = attach(train_dataset, targets[0])
        unlabeled_dataset = attach(unlabeled_dataset, targets[1]) if has_unlabeled else None
    rows.dataset = join_labelled_unlabeled(as_labels(train_dataset), unlabeled_dataset,
                                           _read_columns(model, image_column)) if has_unlabeled else train_dataset
    return rows


def _read_columns(model, image_column: str | None) -> set[str]:
    """The columns a training step reads: the student's forward arguments (as Trainer's `remove_unused_columns`
    finds them, through a PEFT wrapper), the teachers' features, the distillation targets, the words' positions and
    the image column."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {*inspect.signature(base.forward).parameters, FEATURES_COLUMN, TARGETS_COLUMN, WORD_POSITIONS,
            image_column or FEATURES_COLUMN}


def _targets_or_fallback(rows: TrainingRows, model, args, *datasets_and_columns):
    """`_targets`, or None when no distillation term is on. With `distill="auto"` beside a term that reads the rows
    without it (a transfer term), labelled rows too few to cross-fit a probe turn the term off with a warning
    instead of refusing the run: the user asked for no distillation."""
    if rows.distill == "none":
        return None
    try:
        return _targets(rows, model, args, *datasets_and_columns)
    except AFTError as error:
        if not (args.distill == "auto" and args.transfer != "none"):  # auto resolves to "probe" only
            raise
        logger.warning("probe distillation (--distill auto) is off for this run: %s", error)
        rows.distill = "none"
        return None


def with_pool_features(train_dataset, unlabeled_dataset, args, text_column, image_column, device=None):
    """Teacher features for the labelled rows and the pool (None: the labelled rows alone), the pool's first (a
    column of its own is refused before any teacher runs), checked to be alike: the refusal names the options that
    would make them so."""
    if unlabeled_dataset is None:
        return with_word_or_teacher_features(train_dataset, args, text_column, image_column, device=device), None
    made = [FEATURES_COLUMN not in d.column_names for d in (train_dataset, unlabeled_dataset)]
    unlabeled_dataset = with_word_or_teacher_features(unlabeled_dataset, args, text_column, image_column,
                                                      device=device, name="unlabelled dataset")
    train_dataset = with_word_or_teacher_features(train_dataset, args, text_column, image_column, device=device)
    check_same_teachers(train_dataset, unlabeled_dataset, "the unlabelled data's", made_here=made_here(*made))
    return train_dataset, unlabeled_dataset


def made_here(reference: bool, other: bool) -> str | None:
    """Which of two sets' features this command made, when one only (`check_same_teachers`' `made_here`)."""
    return "other" if other and not reference else "reference" if reference and not other else None


def _targets(rows: TrainingRows, model, args, train_dataset, unlabeled_dataset, text_column, image_column):
    """Log-probability targets for the labelled and the unlabelled rows (None without those)."""
    num_labels = model.config.num_labels
    if rows.distill == "probe" and rows.problem_type == TOKEN:  # a target per word
        fit = word_probe_targets(train_dataset, num_labels, args.seed, unlabeled_dataset)
        rows.probe_accuracy, rows.probe_scored = fit.accuracy, fit.scored
        return fit.labeled, fit.unlabeled
    if rows.distill == "probe":
        fit = probe_targets(as_labels(train_dataset), unlabeled_dataset, num_labels, args.seed,
                            problem_type=rows.problem_type)
        rows.probe_accuracy, rows.probe_metric, rows.probe_c = fit.accuracy, fit.metric, fit.c
        rows.probe_scored = fit.scored
        return fit.labeled, fit.unlabeled
    names = [str(model.config.id2label[i]) for i in range(num_labels)]
    revision = rows.distill_teacher_revision = current_revision(args.distill_teacher, "distill teacher")
    return [task_teacher_targets(d, args.distill_teacher, names, args, text_column, image_column, revision)
            if d is not None else None for d in (train_dataset, unlabeled_dataset)]


def labelled_loss(logits: torch.Tensor, labels: torch.Tensor, accelerator, problem_type: str = SINGLE,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """The task loss over the labelled rows of a mixed batch, divided by the labelled rows of the global batch: after
    DDP averages the processes' gradients, N processes train as one would. The loss is transformers' own for the
    problem type: cross-entropy (class ids; -100 marks the unlabelled rows, or words; `label_smoothing` as
    `TrainingArguments.label_smoothing_factor`, which transformers' LabelSmoother computes alike), binary
    cross-entropy (multi-label) or squared error (regression), these two averaged over a row's classes or targets
    (NaN marks the unlabelled rows), so that a batch of labelled rows only gives the model's own loss."""
    if problem_type in (MULTI, REGRESSION):
        total, count = _float_target_loss(logits, labels, problem_type)
    else:
        logits = logits.float().reshape(-1, logits.shape[-1])
        labels = labels.reshape(-1).to(logits.device)
        total = F.cross_entropy(logits, labels, ignore_index=UNLABELED, reduction="sum",
                                label_smoothing=label_smoothing)
        count = (labels != UNLABELED).sum()
    world = accelerator.num_processes
    if world > 1:
        count = accelerator.reduce(count, reduction="sum")
    return total * world / count.clamp_min(1)


def distill_term(logits: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor | None, temperature: float,
                 problem_type: str) -> torch.Tensor:
    """The distillation term of a batch (losses.distillation_loss): per row, or for token classification per word,
    the logits at each word's first sub-token ([B, T, classes], `positions` [B, T]) against the word's target
    ([B, W, classes], NaN-padded; word_batches.word_pairs keeps the words that have one)."""
    targets = targets.to(logits.device)
    if positions is not None:
        logits, targets = word_pairs(logits, positions, targets)
    return distillation_loss(logits, targets, temperature, problem_type)


def _float_target_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str):
    """(sum over the labelled rows of each row's mean loss, labelled rows) for multi-hot rows or regression targets."""
    logits = logits.float().reshape(len(logits), -1)
    labels = labels.to(logits.device, torch.float32).reshape(len(logits), -1)
    labelled = torch.isfinite(labels).all(dim=1)
    loss = F.binary_cross_entropy_with_logits if problem_type == MULTI else F.mse_loss
    return loss(logits[labelled], labels[labelled], reduction="none").mean(dim=1).sum(), labelled.sum()


def terms_summary(args: AFTConfig, rows: TrainingRows, steps: int = 0, batch: int = 0) -> dict:
    """What trained the student besides the labels: the transfer term, the distillation term and the unlabelled rows
    (after `steps` optimizer steps of `batch` rows: how many rows of each set were drawn, when fewer than all)."""
    on = rows.distill != "none"
    labelled, drawn = (rows.mixed_sampler(args).drawn(steps, batch) if steps and rows.n_unlabeled
                       else (rows.n_labeled, rows.n_unlabeled))
    share = args.labeled_fraction or rows.n_labeled / (rows.n_labeled + rows.n_unlabeled)
    return {"transfer": args.transfer, "beta": args.beta,
            "distill": rows.distill, "distill_weight": args.distill_weight if on else None,
            "distill_temperature": args.distill_temperature if on and rows.problem_type != REGRESSION else None,
            "distill_teacher": args.distill_teacher if rows.distill == "logits" else None,
            "distill_teacher_revision": rows.distill_teacher_revision,
            "probe_accuracy": rows.probe_accuracy, "probe_metric": rows.probe_metric,
            "probe_c": rows.probe_c, "probe_scored": rows.probe_scored, "labeled_rows": rows.n_labeled,
            "labeled_rows_drawn": labelled if labelled < rows.n_labeled else None,
            "unlabeled_rows": rows.n_unlabeled, "unlabeled_rows_drawn": drawn if drawn < rows.n_unlabeled else None,
            "augmented_rows": rows.n_augmented,
            "augmented_from": rows.augmented_from if rows.n_augmented else None,
            "generated_rows": rows.n_generated, "generator": rows.generator,
            "generator_revision": rows.generator_revision,
            "labeled_fraction": share if rows.n_unlabeled else None}
