"""Teacher ranking vs the AFT accuracy each teacher actually gives, on Rotten Tomatoes (movie-disjoint 2k/1k split,
the data of bench/quality.py).

    .venv/bin/python bench/ranking.py --threads 1 --seeds 0 1

1. `hf-aft rank-teachers` on the training split: all-MiniLM-L6-v2, all-mpnet-base-v2, a randomly initialised copy of
   all-MiniLM-L6-v2 (deliberately useless), and the student's own initial features (3-layer MiniLM).
2. AFT (beta 0.1) with each teacher alone, and STL, for the given seeds: the quality benchmark's setup (3-layer
   MiniLM student, 3 epochs, batch 32, lr 2e-4, max length 64). Runs append to bench/results/ranking_runs.jsonl and
   are skipped when already there (`--teachers random` runs the useless teacher only).
A table puts both side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from quality import WORK, mpnet_path, prepare_workdir  # noqa: E402

from hf_aft.commands import main as cli_main  # noqa: E402
from hf_aft.commands.train import train  # noqa: E402
from hf_aft.demo import minilm_path  # noqa: E402

RESULTS = Path("bench/results")
RUNS = RESULTS / "ranking_runs.jsonl"


def random_minilm() -> Path:
    """all-MiniLM-L6-v2's architecture and tokenizer with freshly initialised weights (seed 0)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = WORK / "teachers" / "minilm-random-init"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(minilm_path())).save_pretrained(folder)
        AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def aft_run(name: str, teacher: Path | None, seed: int, student: Path, beta: float, extra: tuple = (),
            lr: float = 2e-4, tag: str = "rank") -> dict:
    out = WORK / "runs" / f"{tag}-{name}-{beta}-{seed}"
    transfer = ["--transfer", "none"] if teacher is None else ["--teachers", str(teacher), "--beta", str(beta)]
    args = ["--model_name_or_path", str(student), "--dataset_name", str(WORK / "data"), *transfer, "--seed", str(seed),
            "--num_train_epochs", "3", "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128",
            "--learning_rate", str(lr), "--max_length", "64", "--teacher_max_length", "64", "--save_strategy", "no",
            "--report_to", "none", "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir",
            "--output_dir", str(out), *extra]
    summary = train(args)
    return {"teacher": name, "seed": seed, "beta": beta if teacher else None, "lr": lr,
            "accuracy": summary["eval"]["eval_accuracy"], "trainable_params": summary["trainable_params"],
            "all_params": summary["all_params"], "train_seconds": summary["train"]["train_runtime"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--teachers", nargs="*", default=["stl", "minilm", "mpnet", "random"],
                        help="which AFT runs to do (stl = plain fine-tuning)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--skip_rank", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    student = prepare_workdir(layers=3)
    teachers = {"minilm": minilm_path(), "mpnet": mpnet_path(), "random": random_minilm()}

    ranking = {}
    if not args.skip_rank:
        rank_file = RESULTS / "ranking.json"
        argv = ["rank-teachers", "--teachers", *map(str, teachers.values()), "--model_name_or_path", str(student),
                "--dataset_name", str(WORK / "data"), "--teacher_max_length", "64", "--output_file", str(rank_file),
                "--seed", "0"]  # the folds of the recorded table (the default is 42 since 2026-12-07)
        if cli_main(argv) != 0:
            raise SystemExit("rank-teachers failed")
        ranking = {row["name"]: row for row in json.loads(rank_file.read_text())["rows"]}

    done = [json.loads(line) for line in RUNS.read_text().splitlines()] if RUNS.exists() else []
    for seed in args.seeds:
        for name in args.teachers:
            if any((r["teacher"], r["seed"], r["beta"]) == (name, seed, None if name == "stl" else args.beta)
                   for r in done):
                continue
            row = aft_run(name, teachers.get(name), seed, student, args.beta)
            done.append(row)
            with RUNS.open("a") as f:
                f.write(json.dumps(row) + "\n")

    stl = {r["seed"]: r["accuracy"] for r in done if r["teacher"] == "stl"}
    print(f"\n| teacher | width | LogME | probe acc | AFT accuracy (beta {args.beta:g}) | vs STL | seeds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = {str(path): key for key, path in teachers.items()} | {str(student): "student (initial features)"}
    rows = sorted(ranking.values(), key=lambda r: -r["logme"]) if ranking else [{"name": str(p)} for p in
                                                                                  teachers.values()]
    for row in rows:
        key = names.get(row["name"], row["name"])
        runs = [r for r in done if r["teacher"] == key and r["beta"] == args.beta and r["seed"] in args.seeds]
        accs = [r["accuracy"] for r in runs]
        gains = [r["accuracy"] - stl[r["seed"]] for r in runs if r["seed"] in stl]
        probe = f"{row['probe_accuracy']:.4f} ± {row['probe_accuracy_sd']:.4f}" if "logme" in row else "-"
        print(f"| {key} | {row.get('width', '-')} | {row.get('logme', float('nan')):.4f} | {probe} | "
              f"{statistics.mean(accs):.4f} | {statistics.mean(gains):+.4f} | {len(accs)} |" if accs else
              f"| {key} | {row.get('width', '-')} | {row.get('logme', float('nan')):.4f} | {probe} | - | - | 0 |")
    if stl:
        accs = [stl[s] for s in args.seeds if s in stl]
        print(f"| STL (no teacher) | | | | {statistics.mean(accs):.4f} | - | {len(accs)} |")


if __name__ == "__main__":
    main()
