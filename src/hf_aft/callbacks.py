"""Trainer callbacks of `AFTTrainer`: the stall detector, and the zeroing of the transfer loss's gradients.

A transfer term that is too strong holds the student on its initial plateau: the task loss stays at the class prior
(the entropy of the training labels, what a student that predicts the label frequencies scores) while the transfer
term drives training. `bench/quality.py` measured exactly this for beta >= 1 on a pretrained 3-layer text student
(every seed predicted the majority class; docs/guides/choosing-beta.md). `StallDetector` warns once, naming the step
and suggesting a smaller beta, and records the step in `stalled_at` (`--beta auto` prunes such a candidate), at the
first of two checks that fires; "at the prior" means a mean task loss within `tolerance` (5%, relative) of the prior's
entropy:
- early, at `window` (30%) of the steps: the task loss over the second half of the window is at the prior while the
  mean of beta * transfer loss is at least as large (the transfer term dominates the objective; the vision
  benchmark's beta = 10 collapse);
- late, at `late_window` (50%): the task loss over the last fifth of that window (the steps from 40% to 50%) is still
  at the prior while beta * transfer loss is at least `LATE_SHARE` (a tenth) of it: a smaller term is not what holds
  the student (mpnet suite, step 95 of 189: beta = 1, stalled to the end, 0.114-0.117 against 0.66-0.68; beta = 0.1,
  0.012 against 0.677, on a run that left the plateau after half-way and beat plain fine-tuning). On the pretrained
  text students plain fine-tuning sits on the same plateau for the first 30-40% of the steps (the early check cannot
  tell them apart there) and has usually left it by half of training, while beta = 1 never does; its weighted loss
  is then small (0.12 against 0.69) although its pull on the features is not. `--beta auto` moves both checks onto
  its rungs (1/8 and 1/2 of the final run's steps); `late_window=None` turns the late check off.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import TrainerCallback

from .columns import arrow_column

logger = logging.getLogger(__name__)
LATE_SHARE = 0.1  # the late check's least beta * transfer / task loss (module docstring)


def _warn(message: str) -> None:
    """A warning on its own line above the Trainer's progress bar (tqdm.write), not appended to the bar's line."""
    with logging_redirect_tqdm():
        logger.warning(message)


def label_entropy(dataset) -> float | None:
    """Entropy (nats) of the label distribution of `dataset` (its `labels` or `label` column; per-token labels
    flattened, -100 left out); None without one."""
    column = next((c for c in ("labels", "label") if c in (getattr(dataset, "column_names", None) or [])), None)
    if column is None or not hasattr(dataset, "select_columns"):
        return None
    labels = arrow_column(dataset, column)
    if pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type):  # token classification: per token
        labels = pc.list_flatten(labels)
    labels = np.asarray(labels)
    labels = labels[labels >= 0] if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer) else labels  # -100
    if labels.ndim != 1 or not len(labels) or not np.issubdtype(labels.dtype, np.integer):
        return None
    freq = np.bincount(labels - labels.min()) / len(labels)
    freq = freq[freq > 0]
    return float(-(freq * np.log(freq)).sum())


class StallDetector(TrainerCallback):
    """Warns once when the task loss sits at the class prior under the transfer term (see the module docstring);
    `stalled_at` is the step of the warning, or None. `advice` ends the warning (default: try a smaller --beta;
    `--beta auto` says it drops the candidate)."""

    def __init__(self, trainer, window: float = 0.3, tolerance: float = 0.05, late_window: float | None = 0.5):
        self.trainer, self.window, self.tolerance, self.late_window = trainer, window, tolerance, late_window
        self.advice: str | None = None
        self.prior_entropy: float | None = None
        self.task: list[float] = []
        self.weighted: list[float] = []
        self.stalled_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.prior_entropy = label_entropy(self.trainer.train_dataset)
        self.task, self.weighted, self.stalled_at = [], [], None

    def window_end(self, max_steps: int, window: float | None = None) -> int:
        return max(2, math.ceil((window or self.window) * max_steps - 1e-9))  # a window of k / max_steps ends at k

    def on_step_end(self, args, state, control, **kwargs):
        early = self.window_end(state.max_steps)
        late = self.window_end(state.max_steps, self.late_window)  # == early when the late check is off
        if self.prior_entropy is None or state.global_step > late or self.stalled_at is not None:
            return
        task, transfer = self.trainer.latest_loss_terms()
        if task is None or transfer is None:
            return
        self.task.append(task)
        self.weighted.append(args.beta * transfer)
        if state.global_step == early:
            self.check(state.global_step, args.beta)
        elif state.global_step == late and args.beta > 0:
            self.check(state.global_step, args.beta, late=True)

    def check(self, step: int, beta: float, late: bool = False) -> bool:
        """Decide on the last half (late: fifth) of the losses seen so far; warn and record the step when stalled."""
        recent = len(self.task) // 5 * 4 if late else len(self.task) // 2  # late: the steps just before half-way
        task, weighted = float(np.mean(self.task[recent:])), float(np.mean(self.weighted[recent:]))
        if abs(task - self.prior_entropy) > self.tolerance * self.prior_entropy:
            return False
        if weighted < (LATE_SHARE if late else 1.0) * task:  # early: dominates; late: at least a tenth
            return False
        self.stalled_at = step
        smaller = self.advice or f"try a smaller --beta (e.g. {beta / 10:g})"
        prior = f"the class prior's entropy ({self.prior_entropy:.3f})"
        if late:  # plain fine-tuning may sit there too (too little data or too few steps): say how to tell
            _warn(f"stalled at step {step}: the task loss ({task:.3f}) is still at {prior} at half of "
                  f"training (beta * transfer loss {weighted:.3f}): the student has not left its initial "
                  f"plateau; if plain fine-tuning (--transfer none) does, the transfer term is holding it "
                  f"there: {smaller}.")
        else:
            _warn(f"stalled at step {step}: the task loss ({task:.3f}) has stayed at {prior} for the first "
                  f"{self.window * 100:.3g}% of training while beta * transfer loss ({weighted:.3f}) "
                  f"dominates: the transfer term holds the student on its initial plateau; {smaller}.")
        return True


class ZeroTransferGrads(TrainerCallback):
    """Trainer zeroes only the student's gradients (`model.zero_grad()`); the transfer loss's parameters live
    outside the model, so clear theirs at the same points, or they would accumulate across steps."""

    def __init__(self, trainer):
        self.trainer = trainer

    def _zero(self, *args, **kwargs):
        if self.trainer.transfer_loss is not None:
            self.trainer.transfer_loss.zero_grad(set_to_none=True)

    on_train_begin = on_step_end = _zero
