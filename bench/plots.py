"""The documentation's pictures, drawn from the benchmarks' results: `docs/img/beta.png` (gain over STL by fixed
beta, the `--beta auto` table of docs/benchmarks.md), `docs/img/learning-curve.png` (STL and AFT auto by training
examples) and `docs/img/scales.png` (the learned scales of finished AFT runs).

    .venv/bin/python bench/plots.py [--results bench/results] [--runs RUN_DIR ...] [--out docs/img]

The first two read `bench/results/beta_auto.jsonl` (written by `bench/beta_auto.py`) when it is there, else the
numbers of the tables in docs/benchmarks.md (copied below); the scales plot reads each run's
`transfer_state.safetensors` and is skipped, keeping the committed picture, when no run is there.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BETAS = (0.1, 0.3, 1, 3, 10)
# docs/benchmarks.md, "Choosing beta": mean gain over STL paired by seed, per suite and fixed beta.
TABLE_GAINS = {
    "digits": {0.1: 0.1413, 0.3: 0.2127, 1: 0.2173, 3: -0.0727, 10: -0.4620},
    "minilm": {0.1: 0.0077, 0.3: 0.0143, 1: -0.1487},
    "mpnet": {0.1: 0.0080, 0.3: 0.0150, 1: -0.1433},
    "party": {0.1: 0.0183, 0.3: 0.0133, 1: 0.0110},
    "small": {0.1: -0.0037, 0.3: -0.0560},
    "vision": {0.1: 0.0227, 0.3: 0.0980, 1: 0.1643, 3: 0.1873, 10: -0.0437},
}
# docs/benchmarks.md, "Learning curve": (training examples, STL, AFT auto); "all" is 2,000.
TABLE_CURVE = {
    "vision": [(100, 0.4383, 0.4413), (300, 0.5017, 0.5860), (1000, 0.5710, 0.6693), (2000, 0.5490, 0.7377)],
    "mpnet": [(100, 0.6553, 0.6707), (300, 0.7067, 0.7063), (1000, 0.7523, 0.7520), (2000, 0.7667, 0.7830)],
}
DEFAULT_RUNS = ("runs/bench_groups/rt/aft-0", "runs/bench_groups/party/aft-0", "runs/bench_groups/vision/aft-0")


def read_rows(results: Path) -> list[dict]:
    """The last row of each (suite, method, seed, n): a rerun replaces the earlier one."""
    path = results / "beta_auto.jsonl"
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(row["suite"], row["method"], row["seed"], row.get("n"))] = row
    return list(rows.values())


def accuracies(rows: list[dict], n=None) -> dict:
    """{suite: {method: {seed: accuracy}}} at one training size (None: all)."""
    table = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        if row.get("n") == n:
            table[row["suite"]][row["method"]][row["seed"]] = row["accuracy"]
    return table


def paired_gain(method: dict, stl: dict) -> float | None:
    seeds = sorted(set(method) & set(stl))
    return float(np.mean([method[s] - stl[s] for s in seeds])) if seeds else None


def beta_gains(rows: list[dict]) -> dict:
    if not rows:
        return TABLE_GAINS
    gains = {}
    for suite, methods in sorted(accuracies(rows).items()):
        gains[suite] = {beta: gain for beta in BETAS
                        if (gain := paired_gain(methods.get(f"aft:{beta:g}", {}), methods.get("stl", {}))) is not None}
    return gains


def curve(rows: list[dict]) -> dict:
    if not rows:
        return TABLE_CURVE
    points = {}
    for suite in TABLE_CURVE:
        points[suite] = []
        for n in (100, 300, 1000, None):
            methods = accuracies(rows, n).get(suite, {})
            if methods.get("stl") and methods.get("auto"):
                points[suite].append((n or 2000, np.mean(list(methods["stl"].values())),
                                      np.mean(list(methods["auto"].values()))))
    return points


def plot_beta(gains: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    for suite, by_beta in gains.items():
        betas = sorted(by_beta)
        ax.plot(betas, [100 * by_beta[b] for b in betas], marker="o", label=suite)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xticks(BETAS, [f"{b:g}" for b in BETAS])
    ax.set_xlabel("beta (fixed)")
    ax.set_ylabel("test accuracy gain over STL (points)")
    ax.set_title("AFT vs plain fine-tuning by beta (mean of 3 seeds)", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "beta.png")
    plt.close(fig)


def plot_curve(points: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, len(points), figsize=(6.4, 3.0), dpi=100)
    for ax, (suite, rows) in zip(np.atleast_1d(axes), points.items(), strict=True):
        sizes = [r[0] for r in rows]
        ax.plot(sizes, [r[1] for r in rows], marker="o", label="STL")
        ax.plot(sizes, [r[2] for r in rows], marker="s", label="AFT, --beta auto")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.set_title(suite, fontsize=10)
        ax.set_xlabel("training examples")
    np.atleast_1d(axes)[0].set_ylabel("test accuracy")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning-curve.png")
    plt.close(fig)


def plot_scales(runs: list[Path], out: Path) -> bool:
    from safetensors.numpy import load_file

    found = [run for run in runs if (run / "transfer_state.safetensors").exists()]
    if not found:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.0), dpi=100)
    for run in found:
        logits = load_file(str(run / "transfer_state.safetensors"))["scale_logits"]
        scales = 1 / (1 + np.exp(-logits.astype(np.float64)))
        summary = json.loads((run / "transfer_summary.json").read_text())
        teacher = summary["teachers"][0]["name"].rstrip("/").split("/")[-1]
        ax.hist(scales, bins=40, histtype="step", density=True,
                label=f"{run.parent.name}: {teacher} ({len(scales)} dims)")
    ax.axvline(0.5, color="grey", linewidth=0.8)
    ax.set_xlabel("learned scale sigmoid(s) per teacher feature (start: 0.5)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "scales.png")
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--runs", type=Path, nargs="+", default=[Path(r) for r in DEFAULT_RUNS])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(args.results)
    print(f"beta and learning curve from {'bench results' if rows else 'the tables of docs/benchmarks.md'}")
    plot_beta(beta_gains(rows), args.out)
    plot_curve(curve(rows), args.out)
    if not plot_scales(args.runs, args.out):
        print("no run with transfer_state.safetensors: docs/img/scales.png kept as it is")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
