"""Training-step overhead of the transfer losses over plain fine-tuning (STL), with cached teacher features.

Reproduce (CPU, about 2-4 minutes):

    .venv/bin/python bench/overhead.py

Same student (the first 3 layers of all-MiniLM-L6-v2), same batches (32 Rotten Tomatoes texts padded to 64 tokens),
same seed; only `transfer` changes; STL (`none`) trains on the dataset without the `teacher_features` column.
Teacher features are extracted once with the full MiniLM teacher before any timing. A TrainerCallback times each
step: "step" = on_step_begin -> on_step_end (forward, backward, clipping, optimizer), in wall time and in process CPU
time; "full" = on_step_begin -> next on_step_begin (adds data loading and collation). The first `--warmup` steps of
each run are dropped, runs are interleaved over `--rounds` rounds of [none, aft, kd, rkd] (rotated each round), and
the median over all kept steps is reported. A second table times each transfer loss alone (forward + backward on
[32, 384] features) against the student's forward + backward.
Goal: AFT step / STL step <= 1.05. JSON goes to bench/results/overhead.json.

On a 2-core machine shared with other jobs, `--threads 2` mostly measures OpenMP threads waiting for a CPU (every
intra-op parallel region waits for a scheduler time slice); `--threads 1` then gives cleaner numbers, e.g.
`.venv/bin/python bench/overhead.py --threads 1 --rounds 3`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from hf_aft import AFTConfig, AFTTrainer, extract_teacher_features
from hf_aft.demo import minilm_path, rotten_tomatoes, truncated_student
from hf_aft.losses import build_transfer_loss

TRANSFERS = ("none", "aft", "kd", "rkd")
RESULTS = Path(__file__).parent / "results"


class StepTimer(TrainerCallback):
    """Wall and process-CPU timestamps at each step's begin and end."""

    def __init__(self):
        self.begins, self.ends = [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.begins.append((time.perf_counter(), time.process_time()))

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append((time.perf_counter(), time.process_time()))


def time_run(transfer: str, student: Path, data, steps: int, workdir: str) -> dict[str, list[float]]:
    transformers.set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2)
    args = AFTConfig(output_dir=workdir, transfer=transfer, report_to="none", save_strategy="no", max_steps=steps,
                     logging_steps=10_000, disable_tqdm=True, per_device_train_batch_size=32,
                     dataloader_num_workers=0, seed=0, learning_rate=5e-5)
    timer = StepTimer()
    train = data.remove_columns("teacher_features") if transfer == "none" else data
    with contextlib.redirect_stdout(io.StringIO()):  # keep the Trainer's final log line out of the table
        AFTTrainer(model=model, args=args, train_dataset=train, callbacks=[timer]).train()
    return {"step": [end[0] - begin[0] for begin, end in zip(timer.begins, timer.ends, strict=True)],
            "cpu": [end[1] - begin[1] for begin, end in zip(timer.begins, timer.ends, strict=True)],
            "full": [b[0] - a[0] for a, b in zip(timer.begins, timer.begins[1:], strict=False)]}


def bench(fn, reps: int, warmup: int) -> float:
    """Median seconds of `fn()` over `reps` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loss_costs(student: Path, data, reps: int) -> dict[str, float]:
    """Seconds per forward+backward: the student on one batch, and each transfer loss alone on [32, 384] features."""
    transformers.set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2).train()
    batch = data.select(range(32)).with_format("torch", columns=["input_ids", "token_type_ids", "attention_mask",
                                                                  "label"])[:]
    batch["labels"] = batch.pop("label")

    def student_step():
        model(**batch).loss.backward()

    costs = {"student": bench(student_step, reps, warmup=1)}
    s = torch.randn(32, 384, requires_grad=True)
    t = torch.randn(32, 384)
    for transfer in TRANSFERS[1:]:
        loss = build_transfer_loss(transfer, [384], 384)
        costs[transfer] = bench(lambda loss=loss: loss(s, t).backward(), 50, warmup=3)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as tmp:
        student = truncated_student(minilm_path(), Path(tmp) / "student", layers=3)
        tokenizer = AutoTokenizer.from_pretrained(student)
        data = rotten_tomatoes(args.rows, 100, seed=0)["train"]
        data = data.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=64),
                       batched=True)
        data = extract_teacher_features(data, [str(minilm_path())], max_length=64, cache_dir=Path(tmp) / "cache")

        raw = {t: [] for t in TRANSFERS}  # per transfer, one {"step", "cpu", "full"} per round
        for r in range(args.rounds):
            for transfer in TRANSFERS[r % 4 :] + TRANSFERS[: r % 4]:  # rotate the order from round to round
                raw[transfer].append(time_run(transfer, student, data, args.steps, str(Path(tmp) / "out")))
        costs = loss_costs(student, data, reps=3)

    def median(transfer: str, kind: str) -> float:  # over all rounds' steps after the warm-up ones
        return statistics.median(x for run in raw[transfer] for x in run[kind][args.warmup :])

    med, med_cpu, med_full = ({t: median(t, kind) for t in TRANSFERS} for kind in ("step", "cpu", "full"))
    round_medians = {t: [statistics.median(run["step"][args.warmup :]) for run in raw[t]] for t in TRANSFERS}
    print(f"\n### Step time, {args.rounds} interleaved rounds x {args.steps - args.warmup} timed steps, batch 32 x 64 "
          f"tokens, 3-layer MiniLM student, {torch.get_num_threads()} CPU threads\n")
    print("| transfer | step median (ms) | round medians (ms) | step / STL | step CPU median (ms) | CPU / STL "
          "| full step median (ms) | full / STL |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for t in TRANSFERS:
        rounds = ", ".join(f"{1000 * m:.0f}" for m in round_medians[t])
        cells = [f"{1000 * med[t]:.1f}", rounds, f"{med[t] / med['none']:.3f}",
                 f"{1000 * med_cpu[t]:.1f}", f"{med_cpu[t] / med_cpu['none']:.3f}",
                 f"{1000 * med_full[t]:.1f}", f"{med_full[t] / med_full['none']:.3f}"]
        print(f"| {t} | " + " | ".join(cells) + " |")
    verdict = "met" if med["aft"] / med["none"] <= 1.05 else "NOT met"
    print(f"\nGoal AFT/STL <= 1.05: {verdict} (step {med['aft'] / med['none']:.3f}, "
          f"CPU {med_cpu['aft'] / med_cpu['none']:.3f}, full {med_full['aft'] / med_full['none']:.3f}).")

    print("\n### Transfer loss alone (forward + backward, [32, 384] student and teacher features)\n")
    print("| part | time (ms) | / student forward+backward |")
    print("|---|---:|---:|")
    for part, seconds in costs.items():
        name = "student forward+backward (batch 32 x 64)" if part == "student" else f"{part} loss"
        print(f"| {name} | {1000 * seconds:.3f} | {seconds / costs['student']:.4f} |")

    print(f"\nLoad average (1/5/15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs.")
    RESULTS.mkdir(exist_ok=True)
    out = {"args": vars(args), "step_median_s": med, "step_cpu_median_s": med_cpu, "full_step_median_s": med_full,
           "round_step_medians_s": round_medians, "raw_s": raw, "loss_forward_backward_s": costs,
           "aft_over_stl": med["aft"] / med["none"], "aft_over_stl_full": med_full["aft"] / med_full["none"]}
    (RESULTS / "overhead.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
