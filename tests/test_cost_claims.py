"""What the cost report claims about speed and quality (cost.ratio_line, cost.quality_words) and how it times the
models (timing.py), with measured numbers injected: the timer and the clock are scripted, nothing here is timed."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch

from hf_aft import timing
from hf_aft.card import render_model_card
from hf_aft.cost import card_summary, quality_words, ratio_line


def _row(parameters, latency_ms, throughput, **scores):
    return {"parameters": parameters, "latency_ms_batch1": latency_ms, "throughput_batch32": throughput, **scores}


def test_the_summary_line_never_contradicts_the_throughput_columns():
    """A user's report: batch-1 latency 125 ms (one noisy timing) against the teacher's 10.8 ms, throughput 260 against
    122 examples/s; the line said "11.6x slower" beside columns that show the student twice as fast."""
    student, teacher = _row(1_000, 125.0, 260.0, eval_score=0.8), _row(3_000, 10.8, 122.0, probe_score=0.9)
    line = ratio_line(student, teacher, "teacher")
    assert line == "3.0x smaller than teacher, 11.6x slower at batch 1 but 2.1x faster at batch 32, at 89% of its " \
                   "probe accuracy"
    fast = ratio_line(_row(1_000, 2.0, 400.0), _row(12_000, 18.2, 28.0), "all-mpnet-base-v2")
    assert fast == "12.0x smaller and 9.1x faster than all-mpnet-base-v2 at batch 1 (14.3x at batch 32)"
    slow = ratio_line(_row(4_000, 20.0, 50.0), _row(1_000, 10.0, 150.0), "t")
    assert slow == "4.0x larger and 2.0x slower than t at batch 1 (3.0x at batch 32)"
    # what one decimal shows as 1.0x is neither faster nor slower: no "1.4x faster ... but 1.0x slower"
    tie = ratio_line(_row(4_098, 0.73, 15737.0), _row(2_616, 1.01, 16323.0), "teacher-a")
    assert tie == "1.6x larger than teacher-a, 1.4x faster at batch 1 and about as fast at batch 32"
    ties = ratio_line(_row(1_000, 1.0, 100.0), _row(1_000, 1.04, 97.0), "t")
    assert ties == "1.0x smaller than t, about as fast at batch 1 and at batch 32"


@pytest.mark.parametrize(("metric", "student", "probe", "words"), [
    ("accuracy", 0.72, 0.75, "at 96% of its probe accuracy"),
    ("micro_f1", 0.6, 0.8, "at 75% of its probe micro-F1"),
    ("macro_f1", 0.5, 0.625, "at 80% of its probe macro-F1"),
    ("f1", 0.45, 0.9, "at 50% of its probe F1"),  # token classification: entity F1
    ("accuracy", 0.5, 0.0, "0.5 above its probe's accuracy"),  # no share of a zero
    ("pearson", -0.05, 0.6, "0.65 below its probe's Pearson"),  # was "at -8% of its probe pearson"
    ("pearson", 0.3, -0.1, "0.4 above its probe's Pearson"),
    ("spearman", 0.5, 0.5, "equal to its probe's Spearman"),
    ("mse", 0.9, 0.6, "0.3 above its probe's MSE (lower is better)"),  # a share of 150% would read as better
    ("mae", 0.2, 0.25, "0.05 below its probe's MAE (lower is better)"),
    ("pearson", float("nan"), 0.6, None),  # constant predictions: no correlation to compare
    ("accuracy", None, 0.6, None),
])
def test_the_quality_is_a_share_only_where_a_share_means_something(metric, student, probe, words):
    assert quality_words(student, probe, metric) == words
    line = ratio_line(_row(1, 1.0, 2.0, eval_score=student), _row(2, 2.0, 1.0, probe_score=probe), "t", metric)
    speed = "2.0x smaller and 2.0x faster than t at batch 1 (2.0x at batch 32)"
    assert line == (f"{speed}, {words}" if words else speed)


def _scripted(monkeypatch, durations: dict[str, list[float]]):
    """best_seconds with a scripted timer: each call of model NAME takes the next of durations[NAME] seconds on a fake
    clock. Returns the fns to time and the order they were called in (warm-up calls included)."""
    clock, order = SimpleNamespace(now=0.0), []

    class Timer:
        def __init__(self, fn):
            self.name = fn()

        def timeit(self, number=1):
            order.append(self.name)
            seconds = durations[self.name].pop(0) if len(durations[self.name]) > 1 else durations[self.name][0]
            clock.now += seconds
            return seconds

    monkeypatch.setattr(timing, "timeit", SimpleNamespace(Timer=Timer))
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    return {name: (lambda n=name: n) for name in durations}, order, clock


def test_models_are_timed_in_turns_and_each_figure_is_its_best_call(monkeypatch):
    """Load from other work slows the first calls of a window (80 ms where the model takes 1 ms): measured one
    model after the other and taking the median, the model timed during it looked 40x slower than it is."""
    fns, order, _ = _scripted(monkeypatch, {"student": [0.5] + [0.08] * 5 + [0.001] * 300,
                                            "teacher": [0.5] + [0.08] * 5 + [0.003] * 300})
    best, rounds = timing.best_seconds(fns)
    assert best == {"student": 0.001, "teacher": 0.003}
    assert order[:2] == ["student", "teacher"]  # one warm-up call of each
    assert order[2:8] == ["student", "teacher", "teacher", "student", "student", "teacher"]
    assert len(order) == 2 + 2 * rounds


def test_fast_models_stop_after_enough_settled_rounds_not_at_the_budget(monkeypatch):
    # 1 ms calls: the budget of a second would be 500 rounds; once settled, enough_rounds end it
    fns, _, clock = _scripted(monkeypatch, {"student": [0.001], "teacher": [0.001]})
    best, rounds = timing.best_seconds(fns, budget_s=1.0, enough_rounds=50)
    assert rounds == 50 and clock.now < 0.2 and best == {"student": 0.001, "teacher": 0.001}
    # not settled by then (one fast call among slowed ones): the rounds go on
    fns, _, _ = _scripted(monkeypatch, {"m": [0.0, 0.001] + [0.002] * 60 + [0.001]})
    best, rounds = timing.best_seconds(fns, budget_s=1.0, enough_rounds=50)
    assert best == {"m": 0.001} and rounds == 62


def test_rounds_go_on_until_the_best_call_is_reached_again_and_stop_at_the_cap(monkeypatch):
    # one fast call among slowed ones is not a floor: the rounds go on past the budget until it recurs
    fns, _, clock = _scripted(monkeypatch, {"m": [0.0, 0.2, 0.2, 0.05, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.051, 0.2]})
    best, rounds = timing.best_seconds(fns, budget_s=0.5)
    assert best == {"m": 0.05} and rounds == 10 and clock.now > 0.5
    # a teacher whose calls take 4 s: three rounds at the budget's minimum would be 12 s; the cap stops it after 3
    fns, _, clock = _scripted(monkeypatch, {"slow": [4.0, 4.0, 3.0, 5.0, 6.0, 7.0]})
    best, rounds = timing.best_seconds(fns, cap_s=10.0)
    assert best == {"slow": 3.0} and rounds == 3
    # never settled: the cap still ends it
    fns, _, clock = _scripted(monkeypatch, {"m": [0.0] + [0.1 * 0.8 ** i for i in range(200)]})
    _, rounds = timing.best_seconds(fns, budget_s=0.1, cap_s=0.4)
    assert rounds < 10 and clock.now < 0.5


def test_the_student_is_timed_beside_each_teacher_on_one_torch_thread(monkeypatch):
    monkeypatch.setattr(timing, "best_seconds", functools.partial(timing.best_seconds, min_rounds=1, max_rounds=2,
                                                                  budget_s=0.0))
    threads, seen = torch.get_num_threads(), []

    def model(name):
        return lambda batch: seen.append((name, len(batch), torch.get_num_threads()))

    student = timing.TimedBeside(model("student"), ["a", "b", "c"], threads=1)
    teacher = student.beside(model("teacher"))
    assert {(name, size) for name, size, _ in seen} == {(n, s) for n in ("student", "teacher") for s in (1, 32)}
    assert {n for _, _, n in seen} == {1} and torch.get_num_threads() == threads
    assert set(teacher) == {"latency_ms_batch1", "throughput_batch32", "timed_calls_batch1", "timed_calls_batch32"}
    first = student.figures()
    student.beside(model("teacher-2"))
    both = student.figures()  # its best over both teachers' rounds, their calls counted together
    assert both["latency_ms_batch1"] <= first["latency_ms_batch1"] and both["timed_calls_batch1"] == 4


def test_the_card_says_how_the_speeds_were_timed():
    report = {"device": "cpu: x86 (2 threads)", "timing_threads": 1, "metric": "pearson", "training_seconds": 1.0,
              "train_extraction_seconds": 0.5, "student": _row(10, 125.0, 260.0, eval_score=-0.05),
              "teachers": [{"name": "t", **_row(30, 10.8, 122.0, probe_score=0.6)}]}
    report["summary"] = [ratio_line(report["student"], report["teachers"][0], "t", "pearson")]
    content = render_model_card("aft", versions={}, cost=card_summary(report)).content
    assert "CPU with torch on 1 thread, batch 1 latency and batch 32 throughput (each the best of repeated calls, " \
           "every teacher timed in turns with the student)" in content
    assert "- 3.0x smaller than t, 11.6x slower at batch 1 but 2.1x faster at batch 32, 0.65 below its probe's " \
           "Pearson" in content
