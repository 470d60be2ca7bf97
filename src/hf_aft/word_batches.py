"""Token-classification batches and the word pairs the transfer term compares.

The collator pads the per-token labels with -100 (transformers' `DataCollatorForTokenClassification`), the student's
`word_positions` with -1, and the teachers' per-word features with NaN ([B, words, width]). `word_pairs` turns a batch
into the pairs (student vector, teacher vector) of the words both saw: the student's feature at each word's first
sub-token (the position its head classifies) and the teachers' word-mean features (word_features.py); a word the
student's --max_length cut (no position), or a teacher did not see (NaN), or padding, is left out. `subsample_words`
bounds the number of words a kernel compares.
"""

from __future__ import annotations

import numpy as np
import torch

from .words import WORD_POSITIONS

# The kernel over n words is n x n (memory and time O(n^2), and the batch of 32 sentences of 14 words, CoNLL's mean,
# already gives ~450 words): above this many words a batch's kernel is over a uniform random subset of them.
MAX_KERNEL_WORDS = 512


def stack_word_features(values: list) -> torch.Tensor:
    """Per-row [n_words_i, width] lists -> float32 [B, max n_words, width], padded with NaN (no word)."""
    arrays = [np.asarray(v, dtype=np.float32).reshape(len(v), -1) for v in values]
    width = max(a.shape[1] for a in arrays)
    out = np.full((len(arrays), max(len(a) for a in arrays), width), np.nan, dtype=np.float32)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = array
    return torch.from_numpy(out)


def is_ragged(values: list) -> bool:
    """Whether a features column's values are per-word lists (lists of lists) rather than one vector per row."""
    first = values[0] if len(values) else None
    return first is not None and len(first) > 0 and isinstance(first[0], (list, tuple, np.ndarray))


class TokenCollator:
    """The student's collator for token classification: `DataCollatorForTokenClassification` (labels padded with
    -100) and `word_positions` padded with -1, on the tokenizer's padding side."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        self.tokenizer = tokenizer
        self.collator = DataCollatorForTokenClassification(tokenizer)

    def __call__(self, examples: list[dict]) -> dict:
        positions = [example.pop(WORD_POSITIONS) for example in examples] if WORD_POSITIONS in examples[0] else None
        batch = self.collator(examples)
        if positions is not None:
            width = batch["input_ids"].shape[1]
            padded = torch.full((len(positions), width), -1, dtype=torch.long)
            for row, values in enumerate(positions):
                values = torch.as_tensor(values, dtype=torch.long)
                if self.tokenizer.padding_side == "left":
                    padded[row, width - len(values) :] = values
                else:
                    padded[row, : len(values)] = values
            batch[WORD_POSITIONS] = padded
        return batch


def word_pairs(student: torch.Tensor, positions: torch.Tensor, teacher: torch.Tensor):
    """(student [n, d_s], teacher [n, d_t]) for the n words of the batch that the student and every teacher saw, in
    row-major order (row by row, word by word). `student` [B, T, d_s] is the head's input per token, `positions`
    [B, T] the word each token starts (-1: none), `teacher` [B, W, d_t] NaN-padded per-word features."""
    positions = positions.to(student.device)
    rows, tokens = (positions >= 0).nonzero(as_tuple=True)
    words = positions[rows, tokens]
    inside = words < teacher.shape[1]  # always, unless the features belong to other words than the tokens
    rows, tokens, words = rows[inside], tokens[inside], words[inside]
    teacher = teacher.to(student.device)[rows, words]
    seen = torch.isfinite(teacher).all(dim=1)
    return student[rows[seen], tokens[seen]], teacher[seen]


def word_transfer(loss, student: torch.Tensor, teacher: torch.Tensor, kernel: bool, seed: int, step: int):
    """`loss(student, teacher)` over a batch's word pairs: for a kernel loss (AFT, RKD) over at most
    MAX_KERNEL_WORDS of them (`subsample_words`); a batch with fewer than 2 words (every word cut by a max length)
    gives 0, keeping the graph (a kernel over 0 or 1 rows is no comparison, and a mean over none is NaN)."""
    if student.shape[0] < 2:
        return student.sum() * 0.0
    if kernel:
        student, teacher = subsample_words(student, teacher, seed, step)
    return loss(student, teacher)


def subsample_words(student: torch.Tensor, teacher: torch.Tensor, seed: int, step: int,
                    max_words: int = MAX_KERNEL_WORDS):
    """At most `max_words` of the n word pairs, the same for student and teacher, chosen uniformly at random by a
    generator seeded from (`seed`, `step`): every process, holding the same gathered global batch, picks the same
    words (a kernel over all n words would cost O(n^2) memory)."""
    count = student.shape[0]
    if count <= max_words:
        return student, teacher
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    keep = torch.randperm(count, generator=generator)[:max_words].sort().values.to(student.device)
    return student[keep], teacher[keep]
