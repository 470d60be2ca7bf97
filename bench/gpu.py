"""Teacher extraction throughput and AFT vs STL step time on the device: GPU when there is one (bf16), else CPU.

Reproduce on a GPU machine (after `make bench-setup`; about 5 minutes, most of it loading SmolLM2 from GGUF):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py

and on any machine, with tiny random models built here and a few synthetic texts (seconds; what the test runs):

    .venv/bin/python bench/gpu.py --small

Extraction: `hf_aft.extract_teacher_features` (fresh cache folder, timed whole; the seconds spent hashing and loading
the teacher are shown separately) for an encoder (all-mpnet-base-v2; `--small`: a 2-layer random MPNet) and a decoder
(SmolLM2-135M-Instruct from its GGUF file; `--small`: a 2-layer random LlamaModel), `--batch` 256, max length 128,
teacher dtype bfloat16 on CUDA and float32 on CPU. Reported: real (unpadded) tokens per second and the model's FLOPs
per second over the device's measured matmul peak (bf16 8192^3 on CUDA, float32 2048^3 on CPU, at the same thread
count). FLOPs are counted analytically on the real tokens: 2 x (weights of every nn.Linear but the pooler) per token
plus 4 x L^2 x hidden per layer and sequence (dense attention; a causal kernel may skip half of that term).
Training: the 3-layer MiniLM student (`--small`: a 1-layer random BERT) with transfer `aft` vs `none` (STL) on the same
batches (32 texts), runs alternating over `--rounds`, median step time (on_step_begin -> on_step_end, synchronised
on CUDA) after 2 warm-up steps. JSON goes to bench/results/gpu.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from hf_aft import AFTConfig, AFTTrainer, extract_teacher_features

RESULTS = Path(__file__).parent / "results"
WORDS = "good great fine fun love best bad awful dull boring worst hate movie film plot actor story the a is".split()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, size: int, dtype: torch.dtype, repeats: int = 5) -> float:
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def model_flops(config, linear_weights: int, lengths: np.ndarray) -> float:
    return float(2 * linear_weights * lengths.sum()
                 + 4 * config.num_hidden_layers * config.hidden_size * (lengths.astype(np.float64) ** 2).sum())


def tiny_models(folder: Path) -> dict[str, str]:
    """A word-level tokenizer, a 2-layer MPNet and a 2-layer Llama teacher, a 1-layer BERT student, all random."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        LlamaConfig,
        LlamaModel,
        MPNetConfig,
        MPNetModel,
    )

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(words)})  # not vocab_file=: ignored
    vocab = len(WORDS) + 5
    torch.manual_seed(0)
    models = {"mpnet (tiny random)": MPNetModel(MPNetConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                            num_attention_heads=2, intermediate_size=64)),
              "llama (tiny random)": LlamaModel(LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                            num_attention_heads=4, num_key_value_heads=2,
                                                            intermediate_size=64, pad_token_id=0)),
              "student": BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=32,
                                                                  num_hidden_layers=1, num_attention_heads=2,
                                                                  intermediate_size=64, num_labels=2))}
    paths = {}
    for name, model in models.items():
        path = folder / name.split()[0]
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[name] = str(path)
    return paths


def real_models(folder: Path) -> dict[str, str]:
    from quality import mpnet_path, smollm_path

    from hf_aft.demo import minilm_path, truncated_student

    return {"all-mpnet-base-v2": str(mpnet_path()), "SmolLM2-135M (GGUF)": str(smollm_path()),
            "student": str(truncated_student(minilm_path(), folder / "student", layers=3))}


def texts_for(small: bool, n: int) -> datasets.Dataset:
    if small:
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(WORDS, rng.integers(3, 30))) for _ in range(n)]
        return datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(n)]})
    from hf_aft.demo import rotten_tomatoes

    return rotten_tomatoes(n, 100, seed=0)["train"]


def extraction(name: str, spec: str, data, args, device, peak: float, work: Path) -> dict:
    from peers import LoadClock
    from transformers import AutoConfig, AutoModel

    from hf_aft.teachers.spec import split_gguf

    source, gguf_file = split_gguf(spec)
    options = {"gguf_file": gguf_file} if gguf_file else {}
    config = AutoConfig.from_pretrained(source, **options)
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    lengths = np.array([len(x) for x in tokenizer(list(data["text"]), truncation=True,
                                                  max_length=args.max_length)["input_ids"]])
    with torch.device("meta"):  # counts the weights without loading them
        shapes = AutoModel.from_config(config)
    linear = sum(m.weight.numel() for n, m in shapes.named_modules()
                 if isinstance(m, torch.nn.Linear) and "pooler" not in n)
    flops = model_flops(config, linear, lengths)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    sync(device)
    with LoadClock() as clock:
        start = time.perf_counter()
        out = extract_teacher_features(data, spec, batch_size=args.batch, max_length=args.max_length,
                                       cache_dir=tempfile.mkdtemp(dir=work), device=device, dtype=dtype)
        sync(device)
        seconds = time.perf_counter() - start
    assert np.isfinite(np.asarray(out["teacher_features"][:8])).all()
    compute = seconds - clock.seconds
    return {"teacher": name, "seconds": seconds, "load_s": clock.seconds, "tokens": int(lengths.sum()),
            "flops": flops, "tokens_per_s": lengths.sum() / compute, "of_peak": flops / compute / peak,
            "of_peak_whole": flops / seconds / peak}


class StepClock(TrainerCallback):
    def __init__(self, device):
        self.device, self.begin, self.steps = device, 0.0, []

    def on_step_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.steps.append(time.perf_counter() - self.begin)


def step_times(transfer: str, student: str, data, steps: int, device, work: Path) -> list[float]:
    transformers.set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2)
    args = AFTConfig(output_dir=str(work / "out"), transfer=transfer, beta=0.1, report_to="none", save_strategy="no",
                     max_steps=steps, logging_steps=10_000, disable_tqdm=True, per_device_train_batch_size=32,
                     dataloader_num_workers=0, seed=0, bf16=device.type == "cuda", use_cpu=device.type == "cpu")
    clock = StepClock(device)
    train = data.remove_columns("teacher_features") if transfer == "none" else data
    with contextlib.redirect_stdout(io.StringIO()):
        AFTTrainer(model=model, args=args, train_dataset=train, callbacks=[clock]).train()
    return clock.steps[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny random models, few texts: runs anywhere in seconds")
    parser.add_argument("--n", type=int, default=None, help="texts (default 4096, --small 64)")
    parser.add_argument("--batch", type=int, default=None, help="teacher batch (default 256, --small 16)")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 20, --small 5)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (on CPU)")
    args = parser.parse_args()
    args.n = args.n or (64 if args.small else 4096)
    args.batch = args.batch or (16 if args.small else 256)
    args.steps = args.steps or (5 if args.small else 20)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype, size = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 1024 if args.small else 2048)
    peak = max(matmul_peak(device, size, dtype) for _ in range(2))
    threads = f"CPU, {torch.get_num_threads()} thread(s)"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else threads

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = tiny_models(work / "models") if args.small else real_models(work)
        student = models.pop("student")
        data = texts_for(args.small, args.n)
        rows = [extraction(name, spec, data, args, device, peak, work) for name, spec in models.items()]

        tokenizer = AutoTokenizer.from_pretrained(student)
        train = data.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=64),
                         batched=True).select(range(min(len(data), 32 * args.steps)))
        train = extract_teacher_features(train, next(iter(models.values())), max_length=64, device=device,
                                         cache_dir=work / "train-cache")
        steps = {"none": [], "aft": []}
        for r in range(args.rounds):
            for transfer in (("none", "aft") if r % 2 == 0 else ("aft", "none")):
                steps[transfer] += step_times(transfer, student, train, args.steps, device, work)

    print(f"\n### Teacher extraction on {where}: {args.n} texts, batch {args.batch}, max length {args.max_length}, "
          f"teacher dtype {'bfloat16' if device.type == 'cuda' else 'float32'}; matmul peak {peak / 1e12:.3f} "
          f"TFLOP/s ({str(dtype).split('.')[-1]}, {size}^3)\n")
    print("| teacher | real tokens | time (s) | of which hashing + loading (s) | real tokens/s (without loading) "
          "| of matmul peak (without loading) | of matmul peak (whole call) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['teacher']} | {row['tokens']} | {row['seconds']:.2f} | {row['load_s']:.2f} "
              f"| {row['tokens_per_s']:.0f} | {row['of_peak']:.1%} | {row['of_peak_whole']:.1%} |")
    stl, aft = statistics.median(steps["none"]), statistics.median(steps["aft"])
    print(f"\n### Training step on {where}: batch 32 x 64 tokens, {args.rounds} alternating rounds, "
          f"{len(steps['aft'])} timed steps each\n")
    print("| transfer | step median (ms) | / STL |")
    print("|---|---:|---:|")
    print(f"| none (STL) | {1000 * stl:.1f} | 1.000 |")
    print(f"| aft | {1000 * aft:.1f} | {aft / stl:.3f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps({"args": vars(args), "device": where, "matmul_peak": peak,
                                                  "extraction": rows, "steps_s": steps}, indent=2, default=float))


if __name__ == "__main__":
    main()
