"""How much of the concatenated teacher features each teacher holds, and what the learned scales did with it.

    python bench/feature_energy.py                       # after bench/quality.py --suite multi3,multi3-balanced,llm
    python bench/feature_energy.py --runs multi3-aft-0.1-0 llm-aft-0.1-0

For the teachers of the quality benchmark's `multi3` suite (mpnet + MiniLM + SmolLM2, cached features of the training
split): each teacher's share of the centred energy sum_d Var(x_d) of the concatenation, its RMS centred norm, and the
share of its own energy held by its 5 largest dimensions. For each run dir given (under runs/bench/runs): per teacher,
the mean learned scale, the mean scale of those 5 dimensions, and the correlation of the scales with log Var(x_d).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from datasets import load_from_disk
from quality import WORK, teacher_paths

from hf_aft import extract_teacher_features, read_teacher_infos
from hf_aft.features import TeacherInfo
from hf_aft.scales_plot import teacher_scales
from hf_aft.teachers import display_names

TEACHERS = "mpnet+minilm+smollm"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[f"{suite}-aft-0.1-0" for suite in ("multi3", "multi3-balanced")])
    args = parser.parse_args()
    train = load_from_disk(str(WORK / "data"))["train"]
    data = extract_teacher_features(train, [str(p) for p in teacher_paths(TEACHERS)], max_length=64)
    features = np.asarray(data["teacher_features"], dtype=np.float64)
    variance = features.var(0)
    infos = read_teacher_infos(data)
    bounds = np.cumsum([0] + [info.dim for info in infos])
    blocks = dict(zip(display_names(infos), map(slice, bounds[:-1], bounds[1:]), strict=True))
    top = {name: np.argsort(-variance[block])[:5] for name, block in blocks.items()}

    print("| teacher | width | share of centred energy | RMS centred norm | top-5 dims' share of its energy |")
    print("|---|---:|---:|---:|---:|")
    for name, block in blocks.items():
        own = variance[block]
        print(f"| {name} | {own.size} | {own.sum() / variance.sum():.3f} | {np.sqrt(own.sum()):.2f} | "
              f"{own[top[name]].sum() / own.sum():.3f} |")

    print("\n| run | teacher | mean scale | mean scale of its top-5 dims | corr(scale, log variance) |")
    print("|---|---|---:|---:|---:|")
    for run in args.runs:
        folder = WORK / "runs" / run
        summary = json.loads((folder / "transfer_summary.json").read_text())
        run_teachers = display_names([TeacherInfo(**t) for t in summary["teachers"]])  # as named now
        for name, chunk in zip(run_teachers, teacher_scales(str(folder)).values(), strict=True):
            own = variance[blocks[name]]
            print(f"| {run} | {name} | {chunk.mean():.3f} | {chunk[top[name]].mean():.3f} | "
                  f"{np.corrcoef(chunk, np.log(own))[0, 1]:+.2f} |")


if __name__ == "__main__":
    main()
