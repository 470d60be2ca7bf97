"""CPU speed of models, as the cost report and `hf-aft export` state it: latency per example at batch 1 (ms) and
throughput at batch 32 (examples/s), each the best of repeated calls after a warm-up call.

Why these choices: measured one model after the other, each the median of a few calls with torch on all its threads,
a 2-layer student was reported 2.7x to 81.5x faster than the same 6-layer teacher over six runs on a shared 2-core CPU,
and once 11.6x slower (bench/cost_timing.py shows it; docs/benchmarks.md has its numbers). So:
- the models compared are timed in turns (one call of each per round, the order alternating), so load from other work
  on the machine falls on all of them alike;
- the cost report sets torch to one thread while it times (`threads=1`, torch.utils.benchmark.Timer's default too): a
  multi-threaded call waits for its slowest thread, and with a core taken by other work one call of a tiny model took
  1 ms or 80 ms;
- each figure is the best (shortest) call, not the median: other work only ever adds time to a call (the advice of
  Python's `timeit`, whose timer this uses: garbage collection is off while a call is timed);
- rounds stop once every model's best was reached again by another call (`settled`: not one call that ran while the
  rest were slowed) and either `budget_s` has been spent after `min_rounds` or `enough_rounds` have run (a model whose
  calls take a millisecond is not called a thousand times: the test suite's tiny models made it twice as long), or at
  `cap_s` after one round (a teacher that takes seconds per call is timed a few times, not for minutes).
"""

from __future__ import annotations

import contextlib
import time
import timeit

BATCH = 32
BUDGET_S, CAP_S, MIN_ROUNDS, ENOUGH_ROUNDS, MAX_ROUNDS, SETTLED_WITHIN = 1.0, 10.0, 3, 50, 1000, 0.1


def settled(times: list[float], within: float = SETTLED_WITHIN) -> bool:
    """Whether the shortest of `times` was reached again, within `within` of it, by another call."""
    best = min(times)
    return sum(t <= best * (1 + within) for t in times) >= 2


def best_seconds(fns: dict, budget_s: float = BUDGET_S, min_rounds: int = MIN_ROUNDS, max_rounds: int = MAX_ROUNDS,
                 cap_s: float = CAP_S, enough_rounds: int = ENOUGH_ROUNDS) -> tuple[dict[str, float], int]:
    """The shortest wall time in seconds of each `fns[name]()` over rounds that call each once, in turns, after one
    warm-up call of each; and the number of rounds. Rounds end once every model's shortest time is `settled` and
    `budget_s` is spent (after `min_rounds`) or `enough_rounds` have run; unsettled, they go on to `cap_s`."""
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    for timer in timers.values():
        timer.timeit(1)
    times = {name: [] for name in timers}
    rounds, start = 0, time.perf_counter()
    while rounds < max_rounds:
        spent = time.perf_counter() - start
        enough = rounds >= enough_rounds or rounds >= min_rounds and spent >= budget_s
        if rounds and (spent >= cap_s or enough and all(map(settled, times.values()))):
            break
        for name in list(timers) if rounds % 2 == 0 else list(timers)[::-1]:  # neither always right after the other
            times[name].append(timers[name].timeit(1))
        rounds += 1
    return {name: min(t) for name, t in times.items()}, rounds


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch set to `threads` intra-op threads inside (None: left as it is), restored after."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def speeds(fns_of_batch: dict, examples: list, threads: int | None = None) -> dict[str, dict]:
    """Per name: latency per example at batch 1 (ms), throughput at batch 32 (examples/s) of `fns_of_batch[name](list)`
    timed in turns with the others (torch on `threads` threads), and the rounds each figure is the best of."""
    batch = (examples * (BATCH // max(len(examples), 1) + 1))[:BATCH]
    with torch_threads(threads):
        one, calls_one = best_seconds({name: (lambda f=f: f(batch[:1])) for name, f in fns_of_batch.items()})
        full, calls_full = best_seconds({name: (lambda f=f: f(batch)) for name, f in fns_of_batch.items()})
    return {name: {"latency_ms_batch1": 1000 * one[name], "throughput_batch32": BATCH / full[name],
                   "timed_calls_batch1": calls_one, "timed_calls_batch32": calls_full} for name in fns_of_batch}


def speed(fn_of_batch, examples: list, threads: int | None = None) -> dict:
    """`speeds` of one model timed alone."""
    return speeds({"model": fn_of_batch}, examples, threads)["model"]


def best_of(a: dict | None, b: dict) -> dict:
    """The better figures of two measurements of one model (their calls counted together)."""
    if a is None:
        return dict(b)
    return {"latency_ms_batch1": min(a["latency_ms_batch1"], b["latency_ms_batch1"]),
            "throughput_batch32": max(a["throughput_batch32"], b["throughput_batch32"]),
            **{key: a[key] + b[key] for key in ("timed_calls_batch1", "timed_calls_batch32")}}


class TimedBeside:
    """A model timed in turns with each model compared to it (the cost report's student beside each teacher): its
    figures are its best over all those rounds, or, when nothing was timed beside it, its own."""

    def __init__(self, fn_of_batch, examples: list, threads: int | None = None):
        self.fn, self.examples, self.threads, self.best = fn_of_batch, examples, threads, None

    def beside(self, other_fn_of_batch) -> dict:
        """The other model's `speeds`, timed in turns with this one (whose figures join its best)."""
        measured = speeds({"self": self.fn, "other": other_fn_of_batch}, self.examples, self.threads)
        self.best = best_of(self.best, measured["self"])
        return measured["other"]

    def figures(self) -> dict:
        return self.best if self.best is not None else speed(self.fn, self.examples, self.threads)
