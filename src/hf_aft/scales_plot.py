"""The learned AFT scales of a finished run (`transfer_state.safetensors` beside `transfer_summary.json`), per
teacher, and their histogram (`scales.png`), which the model card shows."""

from __future__ import annotations

import json
import os

import numpy as np

from .outputs import TRANSFER_STATE_NAME, TRANSFER_SUMMARY_NAME


def teacher_scales(output_dir: str) -> dict[str, np.ndarray] | None:
    """Per teacher, the learned AFT scales (sigmoid of the saved logits), or None when the run learned none."""
    from safetensors.numpy import load_file

    state_path = os.path.join(output_dir, TRANSFER_STATE_NAME)
    summary_path = os.path.join(output_dir, TRANSFER_SUMMARY_NAME)
    if not (os.path.exists(state_path) and os.path.exists(summary_path)):
        return None
    logits = load_file(state_path).get("scale_logits")
    with open(summary_path) as f:
        summary = json.load(f)
    dims = [t["dim"] for t in summary.get("teachers", [])]
    names = list(summary.get("scales") or {}) or [t["name"] for t in summary.get("teachers", [])]
    if logits is None or sum(dims) != logits.size or len(names) != len(dims):
        return None
    scales = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return dict(zip(names, np.split(scales, np.cumsum(dims)[:-1]), strict=True))


def write_scales_plot(scales: dict[str, np.ndarray], path: str) -> None:
    """One histogram per teacher of its learned scales, with the starting value 0.5 marked. Uses matplotlib's Agg
    canvas directly (no pyplot): no display needed, no global backend switched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 0.6 + 1.9 * len(scales)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(scales), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, scales.items(), strict=True):
        # Scales often move little from 0.5: zoom on the data, but always show the start.
        low, high = min(float(values.min()), 0.49), max(float(values.max()), 0.51)
        ax.hist(values, bins=np.linspace(low, high, 41), color="#4c72b0")
        ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_title(f"{name}: {values.size} dims, mean {values.mean():.3f}", fontsize=9)
        ax.set_ylabel("dims", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("learned scale sigmoid(s) (dashed: the start, 0.5)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
