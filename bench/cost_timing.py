"""How far the cost report's speed claims move from run to run (timing.py), before and after they were timed in turns
on one torch thread: a 2-layer student and a 6-layer teacher (tiny BERTs built here, 128 wide, as two users' trials
had: their reports said 2.7x to 81.5x faster, once 11.6x slower), timed TRIALS times each way, the two ways
alternating so that both meet the same load.

    .venv/bin/python bench/cost_timing.py [--trials 8] [--hidden 128]

"before": what cost.py did until this change, kept here to compare with: the student timed alone, then the teacher
alone, each figure the median of 3 to 20 calls within 1 s after one warm-up call, torch on all its threads. "now":
cost.teacher_cost with the student timed in turns beside it (timing.TimedBeside, cost.THREADS threads), the code the
report runs. Printed: each trial's batch-1 latency ratio and batch-32 throughput ratio (teacher over student; above 1
the student is faster), their spread (largest over smallest) and how many trials the two ratios pointed different ways.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import tiny  # noqa: E402  (the tests' tiny models: nothing downloaded)
from transformers import BertForSequenceClassification, BertModel  # noqa: E402

from hf_aft import cost, timing  # noqa: E402
from hf_aft.config import TeacherArguments  # noqa: E402


def seconds_per_call_before(fn, min_repeats: int = 3, max_repeats: int = 20, budget_s: float = 1.0) -> float:
    """cost.seconds_per_call as it was: the median of 3 to 20 calls within 1 s, after one warm-up call."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < budget_s):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def speed_before(fn_of_batch, examples: list, threads=None) -> dict:
    """cost.speed as it was (`threads` ignored: it timed on torch's threads as they were)."""
    batch = (examples * (timing.BATCH // max(len(examples), 1) + 1))[: timing.BATCH]
    return {"latency_ms_batch1": 1000 * seconds_per_call_before(lambda: fn_of_batch(batch[:1])),
            "throughput_batch32": timing.BATCH / seconds_per_call_before(lambda: fn_of_batch(batch))}


def models(root: Path, hidden: int):
    torch.manual_seed(0)
    student = BertForSequenceClassification(tiny.bert_config(hidden, layers=2, num_labels=2)).eval()
    tokenizer = tiny.make_tokenizer(root / "student")
    BertModel(tiny.bert_config(hidden, layers=6)).save_pretrained(root / "teacher")
    tiny.make_tokenizer(root / "teacher").save_pretrained(root / "teacher")
    return student, tokenizer, str(root / "teacher")


def trial(way: str, student, tokenizer, teacher: str, data, examples: list) -> tuple[dict, dict]:
    options = TeacherArguments(teacher_max_length=64)
    run = cost.student_runner(student, tokenizer, None, 64)
    if way == "before":
        cost.speed, saved = speed_before, cost.speed
        try:
            return speed_before(run, examples), cost.teacher_cost(teacher, "local", data, options, "text", None,
                                                                  examples)
        finally:
            cost.speed = saved
    timed = timing.TimedBeside(run, examples, cost.THREADS)
    row = cost.teacher_cost(teacher, "local", data, options, "text", None, examples, timed)
    return timed.figures(), row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args()
    data = tiny.sentiment_dataset(64)
    examples = list(data["text"][:32])
    ratios = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as folder:
        student, tokenizer, teacher = models(Path(folder), args.hidden)
        for index in range(args.trials):
            for way in ("before", "now") if index % 2 == 0 else ("now", "before"):
                s, t = trial(way, student, tokenizer, teacher, data, examples)
                one = t["latency_ms_batch1"] / s["latency_ms_batch1"]
                full = s["throughput_batch32"] / t["throughput_batch32"]
                ratios[way].append((one, full))
                print(f"trial {index} {way:6s}: batch 1 {s['latency_ms_batch1']:8.2f} vs "
                      f"{t['latency_ms_batch1']:8.2f} ms ({one:6.2f}x); batch 32 {s['throughput_batch32']:7.0f} vs "
                      f"{t['throughput_batch32']:7.0f} ex/s ({full:6.2f}x)", flush=True)
    for way, pairs in ratios.items():
        ones, fulls = [p[0] for p in pairs], [p[1] for p in pairs]
        flips = sum((a >= 1) != (b >= 1) for a, b in pairs)
        print(f"{way}: batch 1 {min(ones):.2f}x to {max(ones):.2f}x (spread {max(ones) / min(ones):.2f}); batch 32 "
              f"{min(fulls):.2f}x to {max(fulls):.2f}x (spread {max(fulls) / min(fulls):.2f}); the two ratios point "
              f"different ways in {flips} of {len(pairs)} trials")


if __name__ == "__main__":
    main()
