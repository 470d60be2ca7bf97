"""Operating students over time, measured (issue 14): the cost and benefit report of `hf-aft train` with each real
teacher, the ONNX export of the student with and without int8, and how long `hf-aft audit` takes on a 100k-row run.

    make bench-setup && .venv/bin/python bench/ops.py [--threads 2] [--epochs 1] [--audit_steps 50]

Data: the demo's Rotten Tomatoes split (2,000 train / 1,000 test, movie-disjoint); student: the first 3 layers of
all-MiniLM-L6-v2; AFT at beta 0.1, batch 32, lr 2e-4, max length 64. The 100k-row run repeats the corpus's snippets
to 100,000 training rows and trains the same student with plain fine-tuning for a few steps (what is measured is
audit's verification, against a real training's time; the training is short and says so).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import minilm_path, mpnet_path, prepare_workdir  # noqa: E402

from hf_aft.commands import main as hf_aft  # noqa: E402

WORK = Path("runs/bench-ops")
COMMON = ["--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128", "--learning_rate", "2e-4",
          "--max_length", "64", "--teacher_max_length", "64", "--save_strategy", "no", "--report_to", "none",
          "--disable_tqdm", "true", "--seed", "0", "--overwrite_output_dir"]


def train_with(teacher: Path, name: str, epochs: float) -> Path:
    out = WORK / f"aft-{name}"
    if not (out / "cost_report.json").exists():
        student = prepare_workdir(3)
        assert hf_aft(["train", "--model_name_or_path", str(student), "--dataset_name", "runs/bench/data",
                       "--teachers", str(teacher), "--beta", "0.1", "--num_train_epochs", str(epochs), *COMMON,
                       "--output_dir", str(out)]) == 0
    return out


def cost_table(outs: list[Path]) -> None:
    print("\n| model | parameters | size MB | CPU ms/example (batch 1) | examples/s (batch 32) | accuracy (eval) |")
    print("|---|---:|---:|---:|---:|---:|")
    for out in outs:
        report = json.loads((out / "cost_report.json").read_text())
        s = report["student"]
        print(f"| student ({out.name}) | {s['parameters']:,} | {s['bytes'] / 1e6:.1f} | "
              f"{s['latency_ms_batch1']:.2f} | {s['throughput_batch32']:.0f} | {s['eval_accuracy']:.4f} |")
        for t in report["teachers"]:
            print(f"| {Path(t['name']).name} | {t['parameters']:,} | {t['bytes'] / 1e6:.1f} | "
                  f"{t['latency_ms_batch1']:.2f} | {t['throughput_batch32']:.0f} | "
                  f"{t['probe_accuracy']:.4f} (probe) |")
    for out in outs:
        report = json.loads((out / "cost_report.json").read_text())
        print(f"- {out.name}: " + "; ".join(report["summary"]) + f" (training {report['training_seconds']:.0f} s, "
              f"teacher features {report['train_extraction_seconds']:.0f} s; {report['device']})")


def remeasure(outs: list[Path]) -> None:
    """The CPU speed of each student and teacher measured again, alone on the machine (the runs' own reports may have
    been measured while other work ran), as the report times them: the student in turns with each teacher, torch on
    cost.THREADS threads; sizes, probe accuracies and times as the runs recorded them."""
    from hf_aft.config import TeacherArguments
    from hf_aft.cost import THREADS, ratio_line, student_cost, student_runner, teacher_cost
    from hf_aft.evaluation import eval_split, load_run_student
    from hf_aft.timing import TimedBeside

    print("\nspeed measured again, nothing else running (CPU, batch 1 latency and batch 32 throughput):")
    print("| model | parameters | size MB | CPU ms/example (batch 1) | examples/s (batch 32) | accuracy (eval) |")
    print("|---|---:|---:|---:|---:|---:|")
    for out in outs:
        report = json.loads((out / "cost_report.json").read_text())
        split, column, _, max_length = eval_split(str(out))
        examples = list(split.select(range(32))[column])
        model, tokenizer = load_run_student(str(out))
        timed = TimedBeside(student_runner(model, tokenizer, None, max_length), examples, THREADS)
        options = TeacherArguments(teacher_max_length=64)
        for t in report["teachers"]:
            t.update(teacher_cost(t["name"], t["revision"], split, options, "text", None, examples, timed))
        student = {**student_cost(model, tokenizer, examples, str(out), None, max_length, timed=False),
                   **timed.figures(), "eval_accuracy": report["student"]["eval_accuracy"],
                   "eval_score": report["student"].get("eval_score")}
        print(f"| student ({out.name}) | {student['parameters']:,} | {student['bytes'] / 1e6:.1f} | "
              f"{student['latency_ms_batch1']:.2f} | {student['throughput_batch32']:.0f} | "
              f"{student['eval_accuracy']:.4f} |")
        for t in report["teachers"]:
            print(f"| {Path(t['name']).name} | {t['parameters']:,} | {t['bytes'] / 1e6:.1f} | "
                  f"{t['latency_ms_batch1']:.2f} | {t['throughput_batch32']:.0f} | "
                  f"{t['probe_accuracy']:.4f} (probe) |")
            print(f"- {out.name}: {ratio_line(student, t, Path(t['name']).name)}")


def export_table(out: Path) -> None:
    target = WORK / f"export-{out.name}"
    if not (target / "export_report.json").exists():
        assert hf_aft(["export", str(out), "--output_dir", str(target), "--quantize", "dynamic-int8"]) == 0
    report = json.loads((target / "export_report.json").read_text())
    rows = report["rows"]
    print(f"\nexport of {out.name} ({report['exporter']} exporter, {report['eval_rows']} eval examples, CPU)")
    print("| model | size MB | accuracy | agreement with PyTorch | max logit diff | ms/example b1 | latency vs "
          "PyTorch | examples/s b32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        agree = f"{row['agreement']:.1%}" if "agreement" in row else "-"
        diff = f"{row['max_logit_difference']:.1e}" if "max_logit_difference" in row else "-"
        ratio = rows[0]["latency_ms_batch1"] / row["latency_ms_batch1"]
        print(f"| {row['model']} | {row['bytes'] / 1e6:.1f} | {row['accuracy']:.4f} | {agree} | {diff} | "
              f"{row['latency_ms_batch1']:.2f} | {ratio:.2f}x faster | {row['throughput_batch32']:.0f} |")


def big_data(rows: int) -> Path:
    import datasets

    folder = WORK / f"data-{rows}"
    if not (folder / "dataset_dict.json").exists():
        small = datasets.load_from_disk("runs/bench/data")
        train = small["train"]
        repeats = -(-rows // len(train))
        big = datasets.concatenate_datasets([train] * repeats).select(range(rows))
        datasets.DatasetDict({"train": big, "test": small["test"]}).save_to_disk(str(folder))
    return folder


def audit_ratio(rows: int, steps: int) -> None:
    data, out = big_data(rows), WORK / f"stl-{rows}"
    start, trained = time.perf_counter(), not (out / "audit.json").exists()
    if trained:
        assert hf_aft(["train", "--model_name_or_path", str(prepare_workdir(3)), "--dataset_name", str(data),
                       "--transfer", "none", "--max_steps", str(steps), *COMMON, "--output_dir", str(out)]) == 0
    wall = time.perf_counter() - start
    record = json.loads((out / "audit.json").read_text())
    start = time.perf_counter()
    code = hf_aft(["audit", str(out)])
    seconds = time.perf_counter() - start
    train_s = record["metrics"]["train"]["train_runtime"]
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"\naudit of a {rows:,}-row run ({steps} steps of batch 32, plain fine-tuning, 3-layer MiniLM student; "
          f"{len(record['files'])} files, {size:.0f} MB): exit {code}, {seconds:.2f} s including loading the record; "
          f"training {train_s:.1f} s (trainer) -> audit / training = {seconds / train_s:.5f}"
          + (f"; whole train command {wall:.0f} s, audit / whole run = {seconds / wall:.5f}" if trained else ""))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--audit_rows", type=int, default=100_000)
    parser.add_argument("--audit_steps", type=int, default=50)
    parser.add_argument("--parts", nargs="+", default=["cost", "export", "audit"])
    return parser.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    outs = [train_with(minilm_path(), "minilm", args.epochs), train_with(mpnet_path(), "mpnet", args.epochs)]
    if "cost" in args.parts:
        cost_table(outs)
    if "remeasure" in args.parts:
        remeasure(outs)
    if "export" in args.parts:
        export_table(outs[1])
    if "audit" in args.parts:
        audit_ratio(args.audit_rows, args.audit_steps)


if __name__ == "__main__":
    main()
