"""Unlabelled rows (loaded and checked by unlabeled_data.py) given the labelled rows' columns with the label -100, and
mixed into every training batch.

AFT's transfer term and the distillation term need no label: they compare the student with the teachers on every row
of a batch, so rows without labels add what the teachers know of the input distribution. The task loss reads only
the labelled rows: an unlabelled row's class id is `UNLABELED` (CrossEntropyLoss's `ignore_index`), its multi-hot
row or regression targets are NaN (`training_rows.labelled_loss` leaves such rows out).

`MixedSampler` lays out each epoch as one stream of indices over [labelled rows, unlabelled rows] in which the
labelled positions are spread evenly at `labeled_fraction` (default 0.5; None: the two sets' own share, every row
once per epoch); the set with fewer rows than positions is cycled, each pass in a fresh order. The stream depends
only on the seed and the epoch, never on the batch size or the number of processes, so N processes with batch b see
the rows one process with batch N*b sees (the global kernel then matches exactly), and a resumed run replays it."""

from __future__ import annotations

import copy
import logging
import math

import datasets
import numpy as np
import torch

from .errors import AFTError, one_line, warn_once
from .unlabeled_data import LABEL_COLUMNS
from .words import WORD_POSITIONS

UNLABELED = -100


def no_labels(feature, rows: int) -> np.ndarray:
    """The `labels` of `rows` unlabelled rows beside labelled ones whose `labels` column is `feature`: `UNLABELED`
    for class ids; NaN for float targets ([rows], or [rows, width] for multi-hot rows and several targets)."""
    inner = getattr(feature, "feature", None)
    if inner is None and feature.dtype.startswith("int"):
        return np.full(rows, UNLABELED, dtype=np.int64)
    if inner is None:
        return np.full(rows, np.nan, dtype=np.float32)
    width = getattr(feature, "length", -1)
    if width is None or width < 0:
        raise AFTError("the labelled rows' labels are lists of no fixed length: unlabelled rows cannot be mixed in "
                       "for this task.")
    return np.full((rows, width), np.nan, dtype=np.float32)


def as_unlabeled(unlabeled: datasets.Dataset, labelled: datasets.Dataset) -> datasets.Dataset:
    """The unlabelled rows with exactly the labelled training set's columns: any label column of theirs is dropped and
    `labels` marks them unlabelled (`no_labels`). The labelled set's own labels must be in `labels` (the trainer's
    input)."""
    wanted = [c for c in labelled.column_names if c not in LABEL_COLUMNS]
    missing = [c for c in wanted if c not in unlabeled.column_names]
    if missing:
        raise AFTError(f"the unlabelled data lacks the columns {missing} that the labelled training data has "
                       f"({labelled.column_names}): prepare both the same way (tokenize the unlabelled texts too, "
                       "and give them the same teachers' features).")
    rows = unlabeled.select_columns(wanted)
    if WORD_POSITIONS in wanted:  # token classification: -100 for every token of the row
        return rows.add_column("labels", [[UNLABELED] * len(p) for p in rows[WORD_POSITIONS]])
    return rows.add_column("labels", list(no_labels(labelled.features["labels"], len(rows))))


def join_labelled_unlabeled(labelled: datasets.Dataset, unlabeled: datasets.Dataset,
                            needed: set[str] | None = None) -> datasets.Dataset:
    """[labelled rows, unlabelled rows] in one dataset (Arrow tables concatenated, nothing copied); the labelled rows
    first, so that row i < len(labelled) is labelled. A labelled column that the unlabelled rows lack is dropped when
    `needed` (the columns training reads: the student's inputs, the teachers' features...) does not name it: a label
    set's other columns (an id, another target) are not asked of unlabelled data."""
    info = labelled.info.description
    if "labels" not in labelled.column_names:
        raise AFTError("the labelled training data has no 'labels' column to mix unlabelled rows with.")
    if needed is not None:
        unused = [c for c in labelled.column_names if c not in unlabeled.column_names and c not in needed | {"labels"}]
        labelled = labelled.remove_columns(unused) if unused else labelled
    labelled = labelled.cast_column("labels", _label_storage(labelled.features["labels"], labelled))
    unlabeled = as_unlabeled(unlabeled, labelled).cast(labelled.features)
    try:
        joined = datasets.concatenate_datasets([labelled, unlabeled])
    except ValueError as error:
        raise AFTError(f"the unlabelled data's columns do not match the labelled data's: {one_line(error)}") from error
    joined.info.description = info  # the teachers' provenance
    return joined


def _label_storage(feature, labelled: datasets.Dataset):
    """The `labels` type that holds both sets: int64 class ids (a ClassLabel cannot hold -100), float32 targets, or
    float32 lists of the labelled rows' one width (multi-hot rows, several targets)."""
    inner = getattr(feature, "feature", None)
    if inner is None:
        is_class = isinstance(feature, datasets.ClassLabel) or feature.dtype.startswith(("int", "uint", "bool"))
        return datasets.Value("int64") if is_class else datasets.Value("float32")
    if WORD_POSITIONS in labelled.column_names:  # token classification: a class id per token
        return datasets.List(datasets.Value("int64"))
    widths = {len(row) for row in labelled.select_columns(["labels"])["labels"]}
    if len(widths) != 1:
        raise AFTError("the labelled rows' labels are lists of different lengths: unlabelled rows cannot be mixed in "
                       "for this task.")
    return datasets.List(datasets.Value("float32"), length=widths.pop())


def epoch_positions(n_labeled: int, n_unlabeled: int, labeled_fraction: float | None = None) -> tuple[int, int]:
    """(labelled positions, unlabelled positions) of one epoch. With `labeled_fraction` f, the set that needs the
    longer epoch to be seen once at that share decides its length; the other is cycled."""
    if labeled_fraction is None or n_unlabeled == 0:
        return n_labeled, n_unlabeled
    bound = 1000 * (n_labeled + n_unlabeled)  # the sampler holds each position of an epoch: bounded memory
    if max(n_labeled / labeled_fraction, n_unlabeled / (1 - labeled_fraction)) > bound * (1 + 1e-9):  # ends kept
        raise AFTError(f"--labeled_fraction {labeled_fraction:.10g} would make one epoch longer than {bound:,} rows "
                       f"(each set seen once at that share): give one from {n_labeled / bound:.2g} to "
                       f"{1 - n_unlabeled / bound:.6g}.")
    if n_labeled / labeled_fraction >= n_unlabeled / (1 - labeled_fraction):
        total = max(n_labeled + 1, round(n_labeled / labeled_fraction))
        return n_labeled, total - n_labeled
    total = max(n_unlabeled + 1, round(n_unlabeled / (1 - labeled_fraction)))
    return total - n_unlabeled, n_unlabeled


SMALL_POOL_DRAWS = 10  # draws of each pool row an epoch from which a pool reads as too small (a wrong file, often)


def say_repeats(n_labeled: int, n_unlabeled: int, labeled_fraction: float | None) -> None:
    """One line when the mixing draws the labelled rows twice or more an epoch (a large pool makes an epoch the
    pool's: `--num_train_epochs` then counts passes over it), or each pool row `SMALL_POOL_DRAWS` times or more (a
    small pool puts each of its rows in many batches)."""
    labelled, unlabelled = epoch_positions(n_labeled, n_unlabeled, labeled_fraction)
    share = f"a labelled share of {labelled / (labelled + unlabelled):.0%} of each batch"
    if labelled >= 2 * n_labeled:
        said = (f"one epoch follows the {n_unlabeled:,} unlabelled rows: each of the {n_labeled:,} labelled rows is "
                f"drawn about {labelled / n_labeled:.3g} times an epoch ({share}), and --num_train_epochs counts "
                "passes over the unlabelled rows")
    elif unlabelled >= SMALL_POOL_DRAWS * n_unlabeled:
        said = (f"each of the {n_unlabeled:,} unlabelled rows is drawn about {unlabelled / n_unlabeled:.3g} times an "
                f"epoch ({share}, {n_labeled:,} labelled rows): a pool this small weighs each of its rows heavily; "
                "give more unlabelled rows, or a larger --labeled_fraction")
    else:
        return
    warn_once(logging.getLogger(__name__), f"hf-aft: {said}.")


def epoch_length(n_labeled: int, n_unlabeled: int, labeled_fraction: float | None = None) -> int:
    """Rows per epoch of a `MixedSampler` (what sets the number of steps)."""
    return sum(epoch_positions(n_labeled, n_unlabeled, labeled_fraction))


class MixedSampler(torch.utils.data.Sampler):
    """Indices 0..n_labeled-1 (labelled rows) and n_labeled.. (unlabelled rows), the labelled ones evenly spread at
    their share of the epoch (module docstring). Deterministic in (seed, epoch); `set_epoch` is called by the
    Trainer (through accelerate's data loader) at the start of every epoch, a resumed one included."""

    def __init__(self, n_labeled: int, n_unlabeled: int, labeled_fraction: float | None = None, seed: int = 0):
        self.n_labeled, self.n_unlabeled, self.seed, self.epoch = n_labeled, n_unlabeled, seed, 0
        self.positions = epoch_positions(n_labeled, n_unlabeled, labeled_fraction)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.positions)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        labelled = _cycled(rng, self.n_labeled, self.positions[0])
        unlabelled = self.n_labeled + _cycled(rng, self.n_unlabeled, self.positions[1])
        total = len(self)
        # Position i is labelled when floor((i + 1) * L / total) > floor(i * L / total): exactly L of them, evenly.
        steps = np.arange(1, total + 1) * self.positions[0] // total
        is_labelled = np.diff(steps, prepend=0) > 0
        stream = np.empty(total, dtype=np.int64)
        stream[is_labelled], stream[~is_labelled] = labelled, unlabelled
        return iter(stream.tolist())

    def drawn(self, steps: int, batch: int) -> tuple[int, int]:
        """(labelled, unlabelled) distinct rows in the first `steps` optimizer steps of `batch` rows each (every epoch
        starts afresh, its last batch short, as Trainer reads it): what a short run (--max_steps) used of each set."""
        replay, seen, epoch = copy.copy(self), np.zeros(self.n_labeled + self.n_unlabeled, dtype=bool), 0
        while steps > 0 and not seen.all():
            replay.set_epoch(epoch)
            seen[np.fromiter(replay, dtype=np.int64)[: steps * batch]] = True
            steps, epoch = steps - math.ceil(len(self) / batch), epoch + 1
        return int(seen[: self.n_labeled].sum()), int(seen[self.n_labeled:].sum())


def _cycled(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """`length` indices of 0..n-1: whole permutations, a fresh one each pass."""
    if length == 0:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([rng.permutation(n) for _ in range(math.ceil(length / n))])[:length]
