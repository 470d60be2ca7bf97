"""LoRA student vs full fine-tuning student, both under AFT (teacher all-mpnet-base-v2, beta 0.1), on Rotten Tomatoes
(movie-disjoint 2k/1k split; the setup of bench/quality.py: 3-layer MiniLM student, 3 epochs, batch 32, max length 64).

    .venv/bin/python bench/lora.py --threads 1 --seeds 0

The full student trains at lr 2e-4 (the quality benchmark's); the LoRA student (r 8, alpha 16, on query and value,
peft's default for BERT; the head trains fully) at lr 1e-3, as LoRA usually needs a larger learning rate. The full
AFT row is shared with bench/ranking.py (same run). Results append to bench/results/lora_runs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from quality import mpnet_path, prepare_workdir  # noqa: E402
from ranking import RESULTS, RUNS, aft_run  # noqa: E402

PEFT_RUNS = RESULTS / "lora_runs.jsonl"
LORA = ("--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.05")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--lora_lr", type=float, default=1e-3)
    parser.add_argument("--kinds", nargs="*", default=["full", "lora", "lora-stl"],
                        help="full: AFT full fine-tuning; lora: AFT LoRA; lora-stl: LoRA without transfer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    student = prepare_workdir(layers=3)
    teacher = mpnet_path()
    rows = [json.loads(line) for line in PEFT_RUNS.read_text().splitlines()] if PEFT_RUNS.exists() else []
    shared = [json.loads(line) for line in RUNS.read_text().splitlines()] if RUNS.exists() else []
    for seed in args.seeds:
        for kind in args.kinds:
            lr = 2e-4 if kind == "full" else args.lora_lr
            if any((r["kind"], r["seed"], r["lr"]) == (kind, seed, lr) for r in rows):
                continue
            row = next((r for r in shared if (r["teacher"], r["seed"], r["beta"]) == ("mpnet", seed, 0.1)
                        and "trainable_params" in r), None) if kind == "full" else None
            if row is None:
                row = aft_run("mpnet", None if kind == "lora-stl" else teacher, seed, student, 0.1,
                              () if kind == "full" else LORA, lr, tag=f"peft-{kind}-{lr}")
            row = {**row, "kind": kind}
            rows.append(row)
            with PEFT_RUNS.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print("\n| student | transfer | trainable params | of all | lr | test accuracy | train s | seeds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    names = {"full": ("full fine-tuning", "AFT mpnet, beta 0.1"), "lora": ("LoRA r=8 (query, value) + head",
             "AFT mpnet, beta 0.1"), "lora-stl": ("LoRA r=8 (query, value) + head", "none (STL)")}
    for kind, lr in sorted({(r["kind"], r["lr"]) for r in rows}):
        group = [r for r in rows if (r["kind"], r["lr"]) == (kind, lr) and r["seed"] in args.seeds]
        if group:
            accs = [r["accuracy"] for r in group]
            sd = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
            print(f"| {names[kind][0]} | {names[kind][1]} | "
                  f"{group[0]['trainable_params']:,} | {group[0]['trainable_params'] / group[0]['all_params']:.2%} | "
                  f"{group[0]['lr']:g} | {statistics.mean(accs):.4f}{sd} | "
                  f"{statistics.mean(r['train_seconds'] for r in group):.0f} | {len(accs)} |")


if __name__ == "__main__":
    main()
