"""What a run writes beside the student in its output dir, and reads back: the transfer loss's learned state
(`transfer_state.safetensors`: AFT's scale logits or KD's projection, with the teachers' provenance in its metadata)
and `transfer_summary.json` (teachers, beta, per-teacher scale summary). The student itself is a plain transformers
model saved by `Trainer`."""

from __future__ import annotations

import json
import os

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import AFTError, first_line

TRANSFER_STATE_NAME = "transfer_state.safetensors"
TRANSFER_SUMMARY_NAME = "transfer_summary.json"


def save_transfer_state(output_dir: str, transfer_loss, transfer: str, teachers: list[dict]) -> None:
    """The loss's parameters (nothing for RKD, which has none)."""
    state = {k: v.detach().cpu().contiguous() for k, v in transfer_loss.state_dict().items()}
    if state:
        metadata = {"transfer": transfer, "teachers": json.dumps(teachers)}
        save_file(state, os.path.join(output_dir, TRANSFER_STATE_NAME), metadata=metadata)


def load_transfer_state(checkpoint: str, transfer_loss, device: str) -> None:
    """Restore the loss's parameters from a checkpoint; a checkpoint without them (or with a damaged file) is one
    AFTError naming the file, never a silent restart of the scales."""
    if not transfer_loss.state_dict():
        return
    path = os.path.join(checkpoint, TRANSFER_STATE_NAME)
    if not os.path.exists(path):
        raise AFTError(f"cannot resume exactly: {path!r} is missing (the learned scales or projection of the "
                       "transfer loss): resume from a checkpoint written by hf-aft, or start again without "
                       "--resume_from_checkpoint.")
    try:
        transfer_loss.load_state_dict(load_file(path, device=device))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise AFTError(f"cannot resume from {path!r}: {first_line(error)}. Use another checkpoint.") from error


def write_transfer_summary(output_dir: str, summary: dict) -> None:
    with open(os.path.join(output_dir, TRANSFER_SUMMARY_NAME), "w") as f:
        json.dump(summary, f, indent=2)
