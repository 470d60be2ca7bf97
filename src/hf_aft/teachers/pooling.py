"""Pooling: a text model's token states (or its pooler output, or a classifier's logits) -> one vector per text."""

from __future__ import annotations

from typing import Literal, get_args

import torch

from ..errors import AFTError

Pooling = Literal["auto", "mean", "cls", "pooler", "last"]
POOLINGS = get_args(Pooling)


def pool(outputs, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T, H] token states -> [B, H] with `pooling` in mean / cls / pooler / last (padding excluded); `logits`: a
    classifier teacher's head outputs [B, classes] (distillation targets, distillation.py)."""
    if pooling == "logits":
        return outputs.logits
    if pooling == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise AFTError("teacher_pooling='pooler' but this teacher has no pooler output: use mean, cls or last.")
        return pooled
    states = outputs.last_hidden_state
    mask = attention_mask.to(states.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1)
    if pooling == "cls":
        return states[:, 0]
    if pooling == "last":  # position of the last real token, whichever side the padding is on
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask * positions).argmax(dim=1)
        return states[torch.arange(states.shape[0], device=states.device), last]
    raise AFTError(f"unknown teacher pooling {pooling!r}: choose mean, cls, pooler or last.")
