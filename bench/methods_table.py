"""The table the quality benchmarks print: one row per method, its metric as mean ± sd over seeds and its gain over
STL paired by seed (the same seed's STL run), with any extra per-method columns the benchmark names."""

from __future__ import annotations

import statistics
from collections.abc import Callable

METHOD_NAMES = {"none": "STL", "kd": "KD", "aft": "AFT", "rkd": "RKD"}


def paired_table(rows: list[dict], metric: str, label: str,
                 extra: list[tuple[str, Callable[[list[dict]], str]]] = ()) -> str:
    """A markdown table of `rows` (dicts with transfer, beta, seed, scales, train_seconds and `metric`) grouped by
    (transfer, beta), STL first; `extra` adds (header, group -> cell) columns before the scale and time columns."""
    stl = {r["seed"]: r[metric] for r in rows if r["transfer"] == "none"}
    headers = ["method", "beta", f"{label} mean ± sd", "vs STL (paired by seed)", *(h for h, _ in extra), "seeds",
               "scale mean", "train s/run"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for transfer, beta in sorted({(r["transfer"], r["beta"]) for r in rows}, key=lambda k: (k[0] != "none", k)):
        group = [r for r in rows if (r["transfer"], r["beta"]) == (transfer, beta)]
        values = [r[metric] for r in group]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        gains = [r[metric] - stl[r["seed"]] for r in group if r["seed"] in stl]
        gain = "-"
        if gains and transfer != "none":
            gain = f"{statistics.mean(gains):+.4f} (per seed {', '.join(f'{g:+.3f}' for g in gains)})"
        scales = [s["mean"] for r in group for s in r["scales"].values()]
        cells = [METHOD_NAMES.get(transfer, transfer), str(beta) if transfer != "none" else "-",
                 f"{statistics.mean(values):.4f} ± {sd:.4f}", gain, *(cell(group) for _, cell in extra),
                 str(len(values)), f"{statistics.mean(scales):.3f}" if scales else "-",
                 f"{statistics.mean(r['train_seconds'] for r in group):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
