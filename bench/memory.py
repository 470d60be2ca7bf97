"""Peak memory and step time of AFT training with 10k vs 100k (and, with `--million`, 1M) rows of 1,536-wide teacher
features: memory-mapped, neither should grow with the rows.

Reproduce (CPU, about 3 minutes, 1 GB of temporary disk; `--million`: about 10 more minutes and 7 GB):

    .venv/bin/python bench/memory.py [--million]

Each run is a fresh process: `AFTTrainer` trains a small random BERT student (2 layers, 128 wide) for `--steps`
steps of batch 32 (median step time after 5 warm-up steps) on pre-tokenized rows (32 tokens) whose
`teacher_features` column (1,536 floats, the width of mpnet + MiniLM + ... ) was saved with `save_to_disk`. A thread
samples /proc/self/status every 10 ms:
- private memory (RssAnon): what the process allocated itself; the goal is that it does not grow with the rows;
- mapped file pages (RssFile): pages of the memory-mapped Arrow files the process has touched (the trainer scans the
  whole column once for NaN/inf); they are the kernel's page cache, shared and dropped under memory pressure.
The control run loads the same 100k rows into RAM (`keep_in_memory=True`), to show the measurement sees the column
when it is in memory. JSON goes to bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
WIDTH = 1536
RUNS = (("10k rows, float32", 10_000, "float32", False), ("100k rows, float32", 100_000, "float32", False),
        ("100k rows, float16", 100_000, "float16", False), ("100k rows, in RAM (control)", 100_000, "float32", True))
MILLION = ("1M rows, float32", 1_000_000, "float32", False)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peaks = {"RssAnon": 0, "RssFile": 0}
        self.running = True

    def run(self):
        while self.running:
            for field in self.peaks:
                self.peaks[field] = max(self.peaks[field], status_kib(field))
            time.sleep(0.01)


def make_data(folder: Path, rows: int, dtype: str) -> Path:
    """Pre-tokenized rows and random features, written in chunks of 20,000 rows (never all in RAM)."""
    import datasets
    import numpy as np

    features = datasets.Features({
        "input_ids": datasets.List(datasets.Value("int32"), length=32),
        "attention_mask": datasets.List(datasets.Value("int8"), length=32),
        "labels": datasets.Value("int64"),
        "teacher_features": datasets.List(datasets.Value(dtype), length=WIDTH),
    })
    rng, chunks = np.random.default_rng(0), []
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        ids = rng.integers(5, 1000, (n, 32), dtype=np.int32)
        chunk = {"input_ids": ids, "attention_mask": np.ones((n, 32), np.int8), "labels": ids[:, 0] % 2,
                 "teacher_features": rng.standard_normal((n, WIDTH), dtype=np.float32).astype(dtype)}
        chunks.append(datasets.Dataset.from_dict(chunk, features=features).flatten_indices(
            cache_file_name=str(folder / f"chunk-{rows}-{dtype}-{start}.arrow")))
    path = folder / f"data-{rows}-{dtype}"
    datasets.concatenate_datasets(chunks).save_to_disk(str(path))
    for chunk in folder.glob(f"chunk-{rows}-{dtype}-*.arrow"):
        chunk.unlink()
    return path


class StepClock:
    """Seconds of each optimizer step (a TrainerCallback's on_step_begin -> on_step_end)."""

    def __init__(self):
        self.steps, self.began = [], 0.0

    def on_step_begin(self, *args, **kwargs):
        self.began = time.perf_counter()

    def on_step_end(self, *args, **kwargs):
        self.steps.append(time.perf_counter() - self.began)


def worker(args) -> None:
    sampler = Sampler()
    sampler.start()
    import datasets
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    from hf_aft import AFTConfig, AFTTrainer

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    baseline = dict(sampler.peaks)
    data = datasets.load_from_disk(args.data, keep_in_memory=args.in_memory)
    model = BertForSequenceClassification(BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=256, num_labels=2))
    config = AFTConfig(output_dir=args.out_dir, report_to="none", save_strategy="no", max_steps=args.steps,
                       per_device_train_batch_size=32, disable_tqdm=True, logging_steps=10_000, use_cpu=True)
    clock = StepClock()
    trainer = AFTTrainer(model=model, args=config, train_dataset=data)
    trainer.add_callback(type("Clock", (transformers.TrainerCallback,), {"on_step_begin": clock.on_step_begin,
                                                                          "on_step_end": clock.on_step_end}))
    trainer.train()
    sampler.running = False
    step_ms = 1000 * sorted(clock.steps[5:])[len(clock.steps[5:]) // 2]
    Path(args.result).write_text(json.dumps({"peaks_kib": sampler.peaks, "after_imports_kib": baseline,
                                             "median_step_ms": step_ms}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data")
    parser.add_argument("--in_memory", action="store_true")
    parser.add_argument("--out_dir")
    parser.add_argument("--result")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--million", action="store_true", help="add a run with 1,000,000 rows")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    results, runs = {}, RUNS + ((MILLION,) if args.million else ())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = {}
        for name, rows, dtype, in_memory in runs:
            key = (rows, dtype)
            paths[key] = paths.get(key) or make_data(folder, rows, dtype)
            result = folder / "result.json"
            command = [sys.executable, __file__, "--worker", "--data", str(paths[key]), "--steps", str(args.steps),
                       "--out_dir", str(folder / "out"), "--result", str(result)] + (["--in_memory"] if in_memory
                                                                                      else [])
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"run {name!r} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(result.read_text())

    base = results[RUNS[0][0]]["peaks_kib"]
    print(f"\n### Peak memory of AFT training, {args.steps} steps of batch 32, teacher features {WIDTH} wide\n")
    print("| run | private memory peak (MiB) | / 10k rows | mapped file pages peak (MiB) | column size (MiB) | "
          "median step ms | / 10k rows |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base_ms = results[RUNS[0][0]]["median_step_ms"]
    for name, rows, dtype, _ in runs:
        peaks, step_ms = results[name]["peaks_kib"], results[name]["median_step_ms"]
        column = rows * WIDTH * (4 if dtype == "float32" else 2) / 2**20
        print(f"| {name} | {peaks['RssAnon'] / 1024:.0f} | {peaks['RssAnon'] / base['RssAnon']:.2f} | "
              f"{peaks['RssFile'] / 1024:.0f} | {column:.0f} | {step_ms:.1f} | {step_ms / base_ms:.2f} |")
    ratio = results[RUNS[1][0]]["peaks_kib"]["RssAnon"] / base["RssAnon"]
    print(f"\nGoal: private memory at 100k rows / at 10k rows about 1: {ratio:.3f}.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
