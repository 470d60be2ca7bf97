"""Per-step cost of the global-batch kernel (differentiable all-gather) vs per-device kernels, on 2 CPU processes.

Reproduce (CPU, about 5 minutes):

    .venv/bin/python bench/gather.py

Each run is `accelerate launch --multi_gpu --num_processes 2` (gloo, 1 thread per process) of this file in worker
mode: AFTTrainer on the first 3 layers of all-MiniLM-L6-v2, per-device batch 32 of Rotten Tomatoes texts padded to
64 tokens, teacher features 1,152 wide (the width of mpnet + MiniLM; random values: the cost does not depend on
them). Runs of `kernel_scope` global, local and plain fine-tuning (`none`) are interleaved over `--rounds` rounds,
with a diagnostic run that makes the global run's collectives but keeps per-device kernels (`gathers-only`, to
separate the cost of synchronising the processes from the cost of the larger kernel);
a callback times each step (forward, backward, clipping, optimizer step), the first `--warmup` steps are dropped.
After training, each worker also times the transfer loss alone, forward + backward, with and without the gather.
Goal: global step / local step <= 1.05. JSON goes to bench/results/gather.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SCOPES = ("global", "local", "none", "gathers-only")
TEACHER_WIDTH = 1152


def worker(args) -> None:
    import datasets
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, TrainerCallback

    from hf_aft import AFTConfig, AFTTrainer
    from hf_aft.distributed import gather, gather_with_grad
    from hf_aft.losses import AdaptiveKernelLoss

    class StepTimer(TrainerCallback):
        """Wall time per step, and this process's CPU time per step (the work, without waiting for the other)."""

        def __init__(self):
            self.begin, self.begin_cpu, self.steps, self.cpu = 0.0, 0.0, [], []

        def on_step_begin(self, *_, **__):
            self.begin, self.begin_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, *_, **__):
            self.steps.append(time.perf_counter() - self.begin)
            self.cpu.append(time.process_time() - self.begin_cpu)

    transformers.logging.set_verbosity_error()
    transformers.set_seed(0)
    data = datasets.load_from_disk(args.data)
    if args.scope == "gathers-only":  # diagnostic: the global run's collectives, but each process keeps its own rows
        import hf_aft.trainer

        def own_rows(gather_fn):
            def gathered_then_sliced(tensor):
                rank, b = torch.distributed.get_rank(), tensor.shape[0]
                return gather_fn(tensor)[rank * b : (rank + 1) * b]
            return gathered_then_sliced

        hf_aft.trainer.gather_with_grad = own_rows(hf_aft.trainer.gather_with_grad)
        hf_aft.trainer.gather = own_rows(hf_aft.trainer.gather)
    transfer = "none" if args.scope == "none" else "aft"
    if transfer == "none":
        data = data.remove_columns("teacher_features")
    scope = {"none": "local", "gathers-only": "global"}.get(args.scope, args.scope)
    config = AFTConfig(output_dir=args.out_dir, transfer=transfer, kernel_scope=scope, report_to="none",
                       save_strategy="no", max_steps=args.steps, logging_steps=10_000, disable_tqdm=True,
                       per_device_train_batch_size=32, seed=0, learning_rate=5e-5)
    model = AutoModelForSequenceClassification.from_pretrained(args.student, num_labels=2)
    timer = StepTimer()
    trainer = AFTTrainer(model=model, args=config, train_dataset=data, callbacks=[timer])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()

    # The loss alone: [32, 384] student features (the student's width), [32, 1152] teacher features.
    loss = AdaptiveKernelLoss([TEACHER_WIDTH])
    student, teacher = torch.randn(32, 384, requires_grad=True), torch.randn(32, TEACHER_WIDTH)

    def loss_step(global_batch: bool) -> float:
        start = time.perf_counter()
        s, t = (gather_with_grad(student), gather(teacher)) if global_batch else (student, teacher)
        loss(s, t).backward()
        return time.perf_counter() - start

    alone = {}
    for name, global_batch in (("loss_local", False), ("loss_global", True)):
        times = [loss_step(global_batch) for _ in range(60)][10:]
        alone[name] = statistics.median(times)
    if trainer.is_world_process_zero():
        Path(args.result).write_text(json.dumps({"steps": timer.steps, "cpu": timer.cpu, **alone}))


def prepare(folder: Path, rows: int) -> tuple[Path, Path]:
    import numpy as np
    from transformers import AutoTokenizer

    from hf_aft.demo import minilm_path, rotten_tomatoes, truncated_student

    student = truncated_student(minilm_path(), folder / "student", layers=3)
    tokenizer = AutoTokenizer.from_pretrained(student)
    data = rotten_tomatoes(rows, 100, seed=0)["train"]
    data = data.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=64),
                    batched=True)
    rng = np.random.default_rng(0)
    data = data.add_column("teacher_features", list(rng.standard_normal((len(data), TEACHER_WIDTH), np.float32)))
    data.save_to_disk(folder / "data")
    return student, folder / "data"


def launch(scope: str, student: Path, data: Path, folder: Path, steps: int, port: int) -> dict:
    result = folder / f"result-{scope}.json"
    command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(port), __file__, "--worker", "--scope", scope, "--student", str(student), "--data", str(data),
               "--steps", str(steps), "--out_dir", str(folder / f"out-{scope}"), "--result", str(result)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"run {scope} failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scope", default="global")
    parser.add_argument("--student")
    parser.add_argument("--data")
    parser.add_argument("--out_dir")
    parser.add_argument("--result")
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2048)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    raw = {scope: [] for scope in SCOPES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        student, data = prepare(folder, args.rows)
        for r in range(args.rounds):
            for i, scope in enumerate(SCOPES[r % 4 :] + SCOPES[: r % 4]):  # rotate the order each round
                raw[scope].append(launch(scope, student, data, folder, args.steps, 29600 + 4 * r + i))

    def step_median(scope: str, kind: str = "steps") -> float:
        return statistics.median(x for run in raw[scope] for x in run[kind][args.warmup :])

    med = {scope: step_median(scope) for scope in SCOPES}
    cpu = {scope: step_median(scope, "cpu") for scope in SCOPES}
    print(f"\n### Step time on 2 CPU processes (gloo, 1 thread each), per-device batch 32 x 64 tokens, 3-layer MiniLM "
          f"student, {args.rounds} interleaved rounds x {args.steps - args.warmup} timed steps\n")
    print("| run | step median (ms) | round medians (ms) | / local | CPU time per step (ms) | CPU / local |")
    print("|---|---:|---|---:|---:|---:|")
    for scope in SCOPES:
        rounds = ", ".join(f"{1000 * statistics.median(run['steps'][args.warmup:]):.0f}" for run in raw[scope])
        name = {"global": "AFT, kernel_scope=global", "local": "AFT, kernel_scope=local", "none": "STL (no AFT)",
                "gathers-only": "diagnostic: global's gathers, local kernels"}
        print(f"| {name[scope]} | {1000 * med[scope]:.1f} | {rounds} | {med[scope] / med['local']:.3f} | "
              f"{1000 * cpu[scope]:.1f} | {cpu[scope] / cpu['local']:.3f} |")
    ratio = med["global"] / med["local"]
    print(f"\nGoal global/local <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'} ({ratio:.3f} in wall time, "
          f"{cpu['global'] / cpu['local']:.3f} in the main process's CPU time).")

    alone = {key: statistics.median(run[key] for scope in SCOPES for run in raw[scope])
             for key in ("loss_local", "loss_global")}
    print("\n### AFT loss alone, forward + backward, [32, 384] student and [32, 1152] teacher features per process\n")
    print("| kernel | time (ms) | / student step (local run) |")
    print("|---|---:|---:|")
    for key, label in (("loss_local", "per device (B=32)"), ("loss_global", "global, with the gathers (B=64)")):
        print(f"| {label} | {1000 * alone[key]:.3f} | {alone[key] / med['local']:.4f} |")
    print(f"\nLoad average (1/5/15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gather.json").write_text(json.dumps({"args": vars(args), "step_median_s": med, "raw_s": raw,
                                                     "loss_alone_s": alone, "global_over_local": ratio,
                                                     "cpu_median_s": cpu}, indent=2))


if __name__ == "__main__":
    main()
