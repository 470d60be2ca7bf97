"""Trainer callbacks of `AFTTrainer`: the stall detector.

A transfer term that is too strong holds the student on its initial plateau: the task loss stays at the class prior
(the entropy of the training labels, what a student that predicts the label frequencies scores) while beta * transfer
loss dominates the objective. `bench/quality.py` measured exactly this for beta >= 1 on a pretrained 3-layer text
student (every seed predicted the majority class; README, "Choosing beta"). `StallDetector` watches the first
`window` (30%) of the steps and, at the window's end, if over its second half the mean task loss is within
`tolerance` (5%, relative) of the prior's entropy while the mean of beta * transfer loss is at least the task loss,
logs one warning that names the step and records it in `stalled_at` (`--beta auto` prunes such a candidate).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def label_entropy(dataset) -> float | None:
    """Entropy (nats) of the label distribution of `dataset` (its `labels` or `label` column); None without one."""
    column = next((c for c in ("labels", "label") if c in (getattr(dataset, "column_names", None) or [])), None)
    if column is None or not hasattr(dataset, "select_columns"):
        return None
    labels = np.asarray(dataset.select_columns([column]).with_format("numpy")[column])
    if labels.ndim != 1 or not len(labels) or not np.issubdtype(labels.dtype, np.integer):
        return None
    freq = np.bincount(labels - labels.min()) / len(labels)
    freq = freq[freq > 0]
    return float(-(freq * np.log(freq)).sum())


class StallDetector(TrainerCallback):
    """Warns once when the task loss sits at the class prior while beta * transfer loss dominates (see the module
    docstring); `stalled_at` is the step of the warning, or None."""

    def __init__(self, trainer, window: float = 0.3, tolerance: float = 0.05):
        self.trainer, self.window, self.tolerance = trainer, window, tolerance
        self.prior_entropy: float | None = None
        self.task: list[float] = []
        self.weighted: list[float] = []
        self.stalled_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.prior_entropy = label_entropy(self.trainer.train_dataset)
        self.task, self.weighted, self.stalled_at = [], [], None

    def window_end(self, max_steps: int) -> int:
        return max(2, math.ceil(self.window * max_steps))

    def on_step_end(self, args, state, control, **kwargs):
        end = self.window_end(state.max_steps)
        if self.prior_entropy is None or state.global_step > end or self.stalled_at is not None:
            return
        task, transfer = self.trainer.latest_loss_terms()
        if task is None or transfer is None:
            return
        self.task.append(task)
        self.weighted.append(args.beta * transfer)
        if state.global_step == end:
            self.check(state.global_step, args.beta)

    def check(self, step: int, beta: float) -> bool:
        """Decide on the second half of the window; warn and record the step when stalled."""
        half = len(self.task) // 2
        task, weighted = float(np.mean(self.task[half:])), float(np.mean(self.weighted[half:]))
        if abs(task - self.prior_entropy) > self.tolerance * self.prior_entropy or weighted < task:
            return False
        self.stalled_at = step
        logger.warning(f"stalled at step {step}: the task loss ({task:.3f}) has stayed at the class prior's entropy "
                       f"({self.prior_entropy:.3f}) for the first {self.window:.0%} of training while beta * transfer "
                       f"loss ({weighted:.3f}) dominates: the transfer term holds the student on its initial plateau; "
                       f"try a smaller --beta (e.g. {beta / 10:g}).")
        return True
