"""Options: `TeacherArguments` (which teachers, and how their features are made; shared by `hf-aft train`, `hf-aft
features` and `hf-aft rank-teachers`) and `AFTConfig`, the trainer's `TrainingArguments` plus the teacher options and
the few knobs of the transfer loss. Choices are `Literal` types: `--help` lists them, the parser refuses anything
else in one line, and `check_choices` refuses them in Python."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from .changed_defaults import check_changed_defaults
from .distributed import has_accelerator, launched_world_size
from .errors import AFTError, require_extra
from .feature_inputs import FeatureDtype
from .losses import Kernel, Transfer
from .option_checks import check_choices, check_finite, check_made_rows, check_report_to
from .resume_check import OptionsRecord  # noqa: F401 (AFTTrainer registers it: the options each checkpoint records)
from .teachers.backends import TeacherBackend
from .teachers.loading import TeacherDtype
from .teachers.pooling import Pooling
from .teachers.spec import GGUF_SEPARATOR, check_distinct_teachers

DEFAULT_BETA = 0.1  # safe on every suite measured (docs/guides/choosing-beta.md); --beta auto's incumbent

KernelScope = Literal["global", "local"]
FeaturePoint = Literal["head_input", "pre_dropout"]
Distill = Literal["auto", "probe", "logits", "none"]


@dataclass
class TeacherArguments:
    r"""Which teachers, and how their features are made.

    Parameters:
        teachers (`list[str]`, *optional*):
            Frozen teachers whose features are transferred: Hub ids or local folders, each optionally pinned as
            `id@revision`. Their features are computed once, before training, and cached.
        teacher_pooling (`str`, *optional*, defaults to `"auto"`):
            How a teacher's outputs become one vector: `auto` (text encoders: mean over tokens; decoders: the last
            non-padding token; image models: their pooler output when the checkpoint has one, else the CLS token of
            a ViT-like model or the global average of a CNN's feature map), `mean`, `cls`, `pooler` or `last`.
        teacher_batch_size (`int`, *optional*, defaults to `32`):
            Batch size of the teachers' forward passes during feature extraction.
        teacher_max_length (`int`, *optional*, defaults to `256`):
            Teachers truncate texts to this many tokens.
        teacher_feature_dtype (`str`, *optional*, defaults to `"float32"`):
            How the features are stored on disk: `float32`, or `float16` for half the disk and page cache (the
            trainer computes in float32 either way).
        teacher_trust_remote_code (`bool`, *optional*, defaults to `False`):
            Let teachers run modelling code from their Hub repo (`trust_remote_code`); only for teachers you trust.
        teacher_dtype (`str`, *optional*, defaults to `"float32"`):
            `float32`, `float16` or `bfloat16`: the teachers' dtype on an accelerator (on CPU always float32).
        teacher_device_map (`str`, *optional*):
            `auto` spreads a teacher too large for one accelerator over all visible ones (single process only).
        teacher_backend (`str`, *optional*, defaults to `"torch"`):
            Where text teachers run: `torch`, or on CPU `onnxruntime` (exported once, features equal to torch's to
            cosine 0.99999) or `onnxruntime-int8` (quantised: faster, features not equal). See docs/benchmarks.md.
    """

    teachers: list[str] | None = field(
        default=None,
        metadata={"help": "Frozen teachers whose features are transferred: Hub ids or local folders, each "
                  "optionally pinned as id@revision. Their features are computed once, before training, and cached."},
    )
    teacher_pooling: Pooling = field(
        default="auto",
        metadata={"help": "How a teacher's outputs become one vector: auto (text encoders: mean over tokens; "
                  "decoders: the last non-padding token; image models: their pooler output when the checkpoint has "
                  "one, else the CLS token of a ViT-like model or the global average of a CNN's feature map), mean, "
                  "cls, pooler or last."},
    )
    teacher_batch_size: int = field(
        default=32, metadata={"help": "Batch size of the teachers' forward passes during feature extraction."}
    )
    teacher_max_length: int = field(default=256, metadata={"help": "Teachers truncate texts to this many tokens."})
    teacher_feature_dtype: FeatureDtype = field(
        default="float32",
        metadata={"help": "How the features are stored on disk: float32, or float16 for half the disk and page "
                  "cache (the trainer computes in float32 either way)."},
    )
    teacher_trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Let teachers run modelling code from their Hub repo (trust_remote_code); only for "
                  "teachers you trust."},
    )
    teacher_dtype: TeacherDtype = field(
        default="float32",
        metadata={"help": "float32, float16 or bfloat16: the teachers' dtype on an accelerator (CPU: float32)."},
    )
    teacher_device_map: str | None = field(
        default=None,
        metadata={"help": "auto spreads a teacher too large for one accelerator over all visible ones (single "
                  "process only; needs accelerate)."},
    )
    teacher_backend: TeacherBackend = field(
        default="torch",
        metadata={"help": "Where text teachers run: torch, or on CPU onnxruntime (exported once, features equal to "
                  "torch's) or onnxruntime-int8 (quantised: faster, features not equal)."},
    )

    def __post_init__(self):
        check_teacher_options(self)


def check_teacher_options(options) -> None:
    """Range checks of the teacher fields (`TeacherArguments`, and the same fields of `AFTConfig`)."""
    if isinstance(options.teachers, (str, os.PathLike)):
        options.teachers = [options.teachers]
    if options.teachers is not None:
        options.teachers = [os.fspath(t) for t in options.teachers]
    check_choices(options)
    check_distinct_teachers(options.teachers or [])
    if options.teacher_batch_size < 1 or options.teacher_max_length < 1:
        raise AFTError("teacher_batch_size and teacher_max_length must be >= 1.")
    for spec in options.teachers or []:  # transformers imports gguf only once the teachers run
        if GGUF_SEPARATOR in spec or spec.endswith(".gguf"):
            require_extra("gguf", f"GGUF teacher {spec!r}")


@dataclass
class AFTConfig(TrainingArguments, TeacherArguments):
    r"""Training arguments for [`AFTTrainer`]: every `TrainingArguments` field, every `TeacherArguments` field, plus:

    Parameters:
        transfer (`str`, *optional*, defaults to `"aft"`):
            `aft` (adaptive feature transfer), `kd` (linear map + MSE), `rkd` (relational KD: distance + angle) or
            `none` (plain fine-tuning, the STL baseline).
        beta (`float`, *optional*, defaults to `0.1`):
            Weight of the transfer loss: loss = task loss + beta * transfer loss. The knob that matters most; see
            docs/benchmarks.md for why 0.1 is the default rather than the authors' 10.
        kernel (`str`, *optional*, defaults to `"linear"`):
            AFT kernel: `linear` (the paper's) or `rbf`.
        kernel_scope (`str`, *optional*, defaults to `"global"`):
            With several processes (`accelerate launch`), `global` gathers every process's features (with gradients)
            and compares kernels over the global batch, so N processes with batch b train like one with batch N*b;
            `local` compares kernels within each process's batch. Applies to `aft` and `rkd`.
        learn_scales (`bool`, *optional*, defaults to `True`):
            Learn AFT's per-dimension teacher scales; `False` keeps them at 0.5.
        balance_teachers (`bool`, *optional*, defaults to `False`):
            Not in the paper. Before the transfer loss, divide each teacher's features by their root-mean-square
            centred norm over the training set, so that every teacher starts with the same weight in the kernel
            however large its raw features are (an LLM's hidden states can be 50x an encoder's). `False` keeps the
            paper's plain concatenation.
        scales_learning_rate (`float`, *optional*, defaults to `1e-2`):
            Learning rate of the transfer loss's own parameters (AFT's scales, KD's projection), no weight decay.
        student_feature_module (`str`, *optional*):
            Name of the student module whose input is its feature vector (as in `model.named_modules()`). By default
            the classification head's final linear layer (the last `nn.Linear` with `num_labels` outputs).
        student_feature_point (`str`, *optional*, defaults to `"head_input"`):
            `head_input` (the paper's point: the module's input, after the head's dropout) or `pre_dropout` (not in
            the paper: the input of the `nn.Dropout` that feeds the module, when one does, i.e. without dropout noise).
        distill (`str`, *optional*, defaults to `"auto"`):
            Not in the paper (its discussion names the hybrid as the next step): add `distill_weight * T^2 *
            KL(target || student)` (Hinton et al., 2015) on every row of the batch, labelled or not. `probe`: the
            target is the teachers' linear probe (logistic regression on the cached teacher features; out-of-fold for
            labelled rows, so no row's target comes from a probe that saw its label); `logits`: the logits of a
            task-tuned teacher (`distill_teacher`); `none`: off (the paper's loss); `auto`: `probe`, but `none` for
            `transfer="none"` without unlabelled data (the STL baseline), and `logits` when `distill_teacher` is given
            (docs/guides/unlabelled-data.md).
        distill_weight (`float`, *optional*, defaults to `1.0`):
            alpha: the weight of the distillation term.
        distill_temperature (`float`, *optional*, defaults to `1.0`):
            T: both distributions are softened by T and the term is multiplied by T^2; 0.05 to 100.
        distill_teacher (`str`, *optional*):
            With `distill="logits"`: a `*ForSequenceClassification` / `*ForImageClassification` teacher (Hub id or
            folder, optionally `id@revision`) tuned for the same labels; its label names must be the data's.
        labeled_fraction (`float`, *optional*, defaults to `0.5`):
            With unlabelled data: the share of each training batch that is labelled, in (0, 1). An epoch sees every
            row of the set that needs more positions at this share once; the other set is cycled. `None` (Python or
            YAML only): the two sets' own share, every row once per epoch. 0.5 beat the own share at equal steps on
            every suite measured (docs/guides/unlabelled-data.md): with a pool much larger than the
            labelled set, the own share leaves the task loss a row or two per batch.
        augment_copies (`int`, *optional*, defaults to `0`):
            Not in the paper. Add up to this many perturbed copies of each labelled text (words dropped, replaced by
            other words of the labelled texts, spans cut: Tang et al. 2019, section 3.2) or image (cropped, flipped,
            rotated) as unlabelled rows (`hf_aft.augmentation`), for the transfer and distillation terms; `--distill
            auto` then turns probe distillation on; a text copy that reads as a labelled or eval text or another
            copy is dropped (one warning counts them). 0: none; at most 1,000.
        generate_texts (`int`, *optional*, defaults to `0`):
            Not in the paper. Add this many texts written by `generator`, prompted with labelled texts (GAL, He et
            al. 2022), as unlabelled rows (`hf_aft.generation`), as `augment_copies` does. 0: none; at most
            1,000,000 (one or two a second on a CPU; kept as written, so an interrupted run goes on from them).
        generator (`str`, *optional*):
            With `generate_texts`: a causal language model (Hub id, folder or GGUF file, as teachers are named).
    """

    transfer: Transfer = field(
        default="aft",
        metadata={"help": "aft (adaptive feature transfer), kd (linear map + MSE), rkd (relational KD: distance + "
                  "angle) or none (plain fine-tuning, the STL baseline)."},
    )
    beta: float = field(
        default=DEFAULT_BETA,
        metadata={"help": "Weight of the transfer loss: loss = task loss + beta * transfer loss. The knob that "
                  "matters most. Default 0.1 (docs/benchmarks.md says why, rather than the authors' 10); "
                  "`--beta auto` chooses it on data held out of the training split (hf-aft train only)."},
    )
    kernel: Kernel = field(
        default="linear",
        metadata={"help": "AFT kernel: linear (the paper's) or rbf."},
    )
    kernel_scope: KernelScope = field(
        default="global",
        metadata={"help": "With several processes: global (kernels over the global batch, gathered with gradients: "
                  "N processes with batch b train like one with batch N*b) or local (kernels within each "
                  "process's batch). Applies to aft and rkd."},
    )
    learn_scales: bool = field(
        default=True, metadata={"help": "Learn AFT's per-dimension teacher scales; False keeps them at 0.5."}
    )
    balance_teachers: bool = field(
        default=False,
        metadata={"help": "Not in the paper: divide each teacher's features by their RMS centred norm over the "
                  "training set, so every teacher starts with the same weight in the kernel (raw LLM features can "
                  "dwarf an encoder's). False keeps the paper's plain concatenation."},
    )
    scales_learning_rate: float = field(
        default=1e-2,
        metadata={"help": "Learning rate of the transfer loss's own parameters (AFT's scales, KD's projection), "
                  "no weight decay."},
    )
    student_feature_module: str | None = field(
        default=None,
        metadata={"help": "Name of the student module whose input is its feature vector (as in "
                  "model.named_modules()). By default the classification head's final linear layer."},
    )
    student_feature_point: FeaturePoint = field(
        default="head_input",
        metadata={"help": "head_input (the paper's: the head's input, after its dropout) or pre_dropout (not in the "
                  "paper: the input of the dropout that feeds the head, when one does: no dropout noise)."},
    )

    distill: Distill = field(
        default="auto",
        metadata={"help": "Not in the paper: add distill_weight * T^2 * KL(target || student) on every row. probe: "
                  "the teachers' linear probe on the cached features (out-of-fold for labelled rows); logits: a "
                  "task-tuned --distill_teacher; none: the paper's loss; auto: probe, but none for --transfer none "
                  "alone, and logits when --distill_teacher is given."},
    )
    distill_weight: float = field(default=1.0, metadata={"help": "alpha, the weight of the distillation term."})
    distill_temperature: float = field(
        default=1.0, metadata={"help": "T (0.05 to 100): target and student softened by T; the term is times T^2."}
    )
    distill_teacher: str | None = field(
        default=None,
        metadata={"help": "With --distill logits: a *ForSequenceClassification / *ForImageClassification teacher "
                  "(Hub id or folder, optionally id@revision) tuned for the same labels as the data."},
    )
    labeled_fraction: float | None = field(
        default=0.5,
        metadata={"help": "With unlabelled data: the share of each training batch that is labelled, in (0, 1); an "
                  "epoch sees the set that needs more positions once, the other is cycled."},
    )
    augment_copies: int = field(
        default=0,
        metadata={"help": "Not in the paper. Add up to this many perturbed copies of each labelled text or image "
                  "as unlabelled rows (hf_aft.augmentation; duplicates dropped); 0: none; at most 1,000."},
    )
    generate_texts: int = field(
        default=0,
        metadata={"help": "Not in the paper. Add this many texts written by --generator, prompted with labelled "
                  "texts, as unlabelled rows (hf_aft.generation); 0: none; at most 1,000,000."},
    )
    generator: str | None = field(
        default=None, metadata={"help": "With --generate_texts: a causal language model: a Hub id (id@revision), a "
                                "folder, a .gguf file or SOURCE::FILE.gguf, as teachers are named."},
    )

    # Trainer defaults that hf-aft changes: log ten times per run (500 steps logs nothing on a short run), and keep no
    # checkpoint (optimizer state included) unless asked (--save_strategy steps --save_steps N, to resume a run).
    logging_steps: float = field(
        default=0.1, metadata={"help": "Log every N steps, or a fraction of the run when below 1 (hf-aft's default "
                               "0.1: ten logs per run)."}
    )
    save_strategy: str = field(
        default="no", metadata={"help": "Checkpoints: no (hf-aft's default: only the finished student is saved), "
                                "steps or epoch (keep checkpoints to resume a run with --resume_from_checkpoint)."}
    )

    def __post_init__(self):
        check_choices(self)
        check_teacher_options(self)
        if not has_accelerator():  # pinned memory only helps host-to-accelerator copies (torch warns otherwise)
            self.dataloader_pin_memory = False
        if isinstance(self.beta, str) or not (self.beta >= 0 and math.isfinite(self.beta)):  # also catches NaN
            raise AFTError(f"beta must be >= 0 and finite (got {self.beta!r}); --transfer none is plain fine-tuning, "
                           "and --beta auto is train_student's ScriptArguments(beta_auto=True).")
        if not (self.scales_learning_rate > 0 and math.isfinite(self.scales_learning_rate)):
            raise AFTError(f"scales_learning_rate must be a finite number > 0 (got {self.scales_learning_rate}).")
        self._check_kernel_batch()
        self._check_distill()
        check_finite(self)
        # Under `accelerate launch` without GPUs, Trainer would otherwise train each process alone on all the data.
        if launched_world_size() > 1 and not self.use_cpu and not has_accelerator():
            self.use_cpu = True
        check_changed_defaults(self)
        super().__post_init__()
        check_report_to(self.report_to)

    def _check_distill(self) -> None:
        if not (self.distill_weight > 0 and math.isfinite(self.distill_weight)):
            pool = " (with --transfer none, drop --unlabeled_dataset too: no other term reads it)"
            raise AFTError(f"distill_weight must be a finite number > 0 (got {self.distill_weight}); use --distill "
                           f"none to turn distillation off{pool if self.transfer == 'none' else ''}.")
        if not 0.05 <= self.distill_temperature <= 100:  # also refuses nan
            raise AFTError(f"distill_temperature must be between 0.05 and 100 (got {self.distill_temperature}): the "
                           "term's gradients shrink with T below 1 (at 1e-30 its T^2 is 0 in float32: no term at "
                           "all), and above 100 it is already the high-temperature limit, matching logits; Hinton et "
                           "al. use 1 to 20.")
        if self.labeled_fraction is not None and not 0 < self.labeled_fraction < 1:
            raise AFTError(f"labeled_fraction must be in (0, 1) (got {self.labeled_fraction}): the share of each "
                           "batch that is labelled (default 0.5).")
        check_made_rows(self)
        if self.distill == "logits" and not self.distill_teacher:
            raise AFTError("--distill logits needs --distill_teacher ID: a classifier tuned for the same labels "
                           "(single-label tasks; the other tasks distil the teachers' probe, --distill probe).")
        if self.distill_teacher and self.distill not in ("logits", "auto"):
            raise AFTError(f"--distill_teacher is used by --distill logits only (this run has --distill "
                           f"{self.distill}): drop it, or pass --distill logits.")
        if self.distill_teacher:
            self.distill_teacher = os.fspath(self.distill_teacher)
            self.distill = "logits"

    def resolved_distill(self, has_unlabeled: bool) -> str:
        """The distillation asked for: `auto` is `probe`, but `none` for `transfer="none"` without unlabelled data,
        augmented copies or generated texts (plain fine-tuning). Too few labelled rows for a probe turn `auto` off
        later (training_rows.py)."""
        if self.distill == "auto":
            made = self.augment_copies or self.generate_texts
            return "probe" if has_unlabeled or made or self.transfer != "none" else "none"
        return self.distill

    def needs_teacher_features(self, has_unlabeled: bool = False) -> bool:
        """Whether the run reads the `teacher_features` column: a transfer term, or the probe's targets."""
        return self.transfer != "none" or self.resolved_distill(has_unlabeled) == "probe"

    def _check_kernel_batch(self) -> None:
        world = launched_world_size()
        batch = self.per_device_train_batch_size * (world if self.kernel_scope == "global" else 1)
        if self.transfer in ("aft", "rkd") and batch < 3:  # 2 centred rows are u and -u whatever the input
            where = "each process's batch" if self.kernel_scope == "local" else "the global batch"
            hint = " or --kernel_scope global" if world > 1 and self.kernel_scope == "local" else ""
            raise AFTError(f"transfer={self.transfer!r} compares examples within {where}, which would hold "
                           f"{batch} example{'' if batch == 1 else 's'}, too few to compare (2 centred rows are the "
                           f"same pair for any input): set --per_device_train_batch_size 3 or more{hint}.")
