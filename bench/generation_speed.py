"""Writing speed of `--generate_texts`: continuations per prompt sharing its computed prefix, against one each.

SmolLM2-135M-Instruct (Q4_1 GGUF, bench/quality.py's generator) writes texts from prompts of 4 Rotten Tomatoes
labelled texts, `hf_aft.generation.generate` as a run calls it, once with `SAMPLES_PER_PROMPT` = 1 (every text
computes its own prompt, as before) and once with the shipped value, alternating, in one process (the ratio is what
to read: run it alone, nothing else on the cores). Prints texts per second, the ratio, and the mean words and distinct
words per text (a shared prompt must not make the texts shorter or narrower).

    python bench/generation_speed.py                       # 96 texts per setting, 2 rounds, 2 threads
    python bench/generation_speed.py --texts 192 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import datasets
import torch
from quality import WORK, smollm_path

from hf_aft import generation
from hf_aft.provenance import teacher_source


def write(model, tokenizer, texts: list[str], count: int, samples: int, seed: int) -> tuple[float, list[str]]:
    """(seconds, texts) of one writing pass with `samples` continuations per prompt."""
    shipped = generation.SAMPLES_PER_PROMPT
    generation.SAMPLES_PER_PROMPT = samples
    try:
        start = time.perf_counter()
        made = generation.generate(model, tokenizer, texts, count, seed)
        return time.perf_counter() - start, made
    finally:
        generation.SAMPLES_PER_PROMPT = shipped


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=96, help="texts per setting and round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = str(smollm_path())
    name, _, gguf_file = teacher_source(spec)
    revision, _ = generation.resolve_generator(spec)
    model, tokenizer = generation.load_generator(spec, name, revision, gguf_file)
    labelled = datasets.load_from_disk(str(WORK / "data"))["train"]["text"][:100]
    settings = (1, generation.SAMPLES_PER_PROMPT)
    seconds, made = {s: [] for s in settings}, {s: [] for s in settings}
    for round_ in range(args.rounds):
        for samples in settings:
            took, texts = write(model, tokenizer, labelled, args.texts, samples, seed=round_)
            seconds[samples].append(took)
            made[samples] += texts
    base = statistics.mean(seconds[1])
    print(f"\n{args.texts} texts x {args.rounds} rounds, {args.threads} threads, SmolLM2-135M-Instruct Q4_1, "
          "prompts of 4 Rotten Tomatoes texts\n")
    print("| continuations per prompt | texts / s | time / one each | words per text | distinct words per text |")
    print("|---:|---:|---:|---:|---:|")
    for samples in settings:
        mean = statistics.mean(seconds[samples])
        words = [len(t.split()) for t in made[samples]]
        distinct = len({w.lower() for t in made[samples] for w in t.split()}) / len(made[samples])
        print(f"| {samples} | {args.texts / mean:.2f} | {mean / base:.2f}x | {statistics.mean(words):.1f} | "
              f"{distinct:.2f} |")


if __name__ == "__main__":
    main()
