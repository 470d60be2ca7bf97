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
Training: the 3-layer MiniLM student (`--small`: a 1-layer random BERT) with transfer `aft`, `none` (STL) and AFT +
probe distillation + unlabelled rows (`--distill probe`, the other texts as the pool, half of each batch) on the
same labelled batches (32 texts), runs alternating over `--rounds`, median step time (on_step_begin -> on_step_end,
synchronised on CUDA) after 2 warm-up steps. JSON goes to bench/results/gpu.json (not with `--small`).

On a machine without the real models (a lent GPU machine takes 64 MiB of files), `--skeletons DIR` runs the same
models' architectures with random weights: speed does not depend on the weights' values. Make DIR here (a few MB:
each model's config and tokenizer, and the texts), then carry it:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py --make_skeletons .gpu/skeletons
    python bench/gpu.py --skeletons .gpu/skeletons [--scale]

At scale (issue 24), a separate invocation that fits one 10-minute device call:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py --scale       # --small --scale: the same on CPU in seconds

For all-MiniLM-L6-v2 and all-mpnet-base-v2 (bf16, each with the attention transformers picks: SDPA for BERT, eager for
MPNet, which has no SDPA path): the largest teacher batch that fits (doubling from `--batch` on the longest texts until
the device runs out of memory, up to `--max_batch`), then at each of `--scale_rows` (default 10k, 100k, 1M texts: the
Rotten Tomatoes corpus repeated and numbered, bench/resume.py) rows/s, real tokens/s and the share of the bf16 matmul
peak, the device's peak memory, and sentence-transformers' `encode` (bf16, same batch) on the same texts as a ratio;
then bench/resume.py (a pass killed at 50% and resumed) on the device. JSON goes to bench/results/gpu_scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
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


def to_json(value):
    return str(value) if isinstance(value, Path) else float(value)


def save(args, name: str, result: dict) -> None:
    """The results JSON, except for `--small` (a check that the script runs, not a measurement to keep)."""
    if not args.small:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / name).write_text(json.dumps(result, indent=2, default=to_json))


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


def make_skeletons(folder: Path) -> None:
    """Each real model's config and tokenizer (no weights) and the benchmark's texts, for `--skeletons`."""
    from transformers import AutoConfig

    from hf_aft.demo import minilm_path, rotten_tomatoes
    from hf_aft.teachers.spec import split_gguf

    with tempfile.TemporaryDirectory() as tmp:
        models = real_models(Path(tmp))
        models = {"all-mpnet-base-v2": models["all-mpnet-base-v2"], "SmolLM2-135M": models["SmolLM2-135M (GGUF)"],
                  "student": models["student"], "all-MiniLM-L6-v2": str(minilm_path())}
        for name, spec in models.items():
            source, gguf_file = split_gguf(spec)
            options = {"gguf_file": gguf_file} if gguf_file else {}
            AutoConfig.from_pretrained(source, **options).save_pretrained(folder / name)
            AutoTokenizer.from_pretrained(source, **options).save_pretrained(folder / name)
    texts = {"train": list(rotten_tomatoes(4096, 100, seed=0)["train"]["text"]),
             "corpus": list(rotten_tomatoes(n_unlabeled=0)["train"]["text"])}
    (folder / "texts.json").write_text(json.dumps(texts))


def skeleton_models(skeletons: Path, folder: Path) -> dict[str, str]:
    """The skeletons' models with random weights (seed 0), saved under `folder`: name -> path."""
    from transformers import AutoConfig, AutoModel

    paths = {}
    for config_file in sorted(skeletons.glob("*/config.json")):
        name, path = config_file.parent.name, folder / config_file.parent.name
        config = AutoConfig.from_pretrained(config_file.parent)
        torch.manual_seed(0)
        model = (AutoModelForSequenceClassification if name == "student" else AutoModel).from_config(config)
        model.save_pretrained(path)
        AutoTokenizer.from_pretrained(config_file.parent).save_pretrained(path)
        paths[name] = str(path)
    return paths


def skeleton_texts(skeletons: Path, part: str) -> list[str]:
    return json.loads((skeletons / "texts.json").read_text())[part]


def texts_for(small: bool, n: int, skeletons: Path | None = None) -> datasets.Dataset:
    if skeletons:
        texts = skeleton_texts(skeletons, "train")[:n]
        return datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]})
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
    return {"teacher": name, "attention": shapes.config._attn_implementation, "seconds": seconds,
            "load_s": clock.seconds, "tokens": int(lengths.sum()),
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


RECIPES = {"none": ("none", "none"), "aft": ("aft", "none"), "aft+distill+u": ("aft", "probe")}  # transfer, distill


def step_times(recipe: str, student: str, data, pool, steps: int, device, work: Path) -> list[float]:
    """Step times of one run: `recipe` in RECIPES; "+u" adds `pool` (unlabelled rows, half of each batch)."""
    transformers.set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2)
    transfer, distill = RECIPES[recipe]
    args = AFTConfig(output_dir=str(work / "out"), transfer=transfer, distill=distill, beta=0.1, report_to="none",
                     save_strategy="no", max_steps=steps, logging_steps=10_000, disable_tqdm=True,
                     per_device_train_batch_size=32, dataloader_num_workers=0, seed=0, bf16=device.type == "cuda",
                     use_cpu=device.type == "cpu")
    clock = StepClock(device)
    train = data.remove_columns("teacher_features") if transfer == "none" else data
    unlabeled = pool if recipe.endswith("+u") else None
    with contextlib.redirect_stdout(io.StringIO()):
        AFTTrainer(model=model, args=args, train_dataset=train, unlabeled_dataset=unlabeled, callbacks=[clock]).train()
    return clock.steps[2:]


def fits(spec: str, data, batch: int, args, device, work: Path) -> bool:
    """Whether extraction at `batch` runs on the longest texts without running out of device memory."""
    longest = data.select(np.argsort([-len(t) for t in data["text"][: 50 * batch]])[: 2 * batch])
    try:
        extract_teacher_features(longest, spec, batch_size=batch, max_length=args.max_length, device=device,
                                 dtype="bfloat16" if device.type == "cuda" else "float32",
                                 cache_dir=tempfile.mkdtemp(dir=work))
        return True
    except Exception as error:  # torch.OutOfMemoryError, possibly wrapped on its way out of datasets' map
        if "out of memory" not in str(error).lower():
            raise
        return False
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def peer_seconds(spec: str, data, batch: int, args, device) -> float:
    """sentence-transformers' encode on the same texts, same batch, bf16 on CUDA."""
    from sentence_transformers import SentenceTransformer

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = SentenceTransformer(spec, device=str(device), model_kwargs={"dtype": dtype})
    model.max_seq_length = args.max_length
    texts = list(data["text"])
    sync(device)
    start = time.perf_counter()
    model.encode(texts, batch_size=batch, convert_to_numpy=True)
    sync(device)
    return time.perf_counter() - start


def scale(args, device, peak: float, where: str) -> None:
    from resume import corpus, numbered

    names = ["mpnet (tiny random)"] if args.small else ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.small:
            paths, biggest = tiny_models(work / "models"), texts_for(True, max(args.scale_rows))
        elif args.skeletons:
            paths = skeleton_models(args.skeletons, work / "models")
            names = [f"{name} (random weights)" for name in names]
            paths = {f"{name} (random weights)": path for name, path in paths.items()}
            texts = numbered(skeleton_texts(args.skeletons, "corpus"), max(args.scale_rows))
            biggest = datasets.Dataset.from_dict({"text": texts})
        else:
            from quality import mpnet_path

            from hf_aft.demo import minilm_path

            paths = {"all-MiniLM-L6-v2": str(minilm_path()), "all-mpnet-base-v2": str(mpnet_path())}
            biggest = datasets.load_from_disk(str(corpus(max(args.scale_rows), work / "corpus")))
        for name in names:
            batch = args.batch
            while batch * 2 <= args.max_batch and fits(paths[name], biggest, batch * 2, args, device, work):
                batch *= 2
            for rows in args.scale_rows:
                data = biggest.select(range(rows))
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                row = extraction(name, paths[name], data, argparse.Namespace(**{**vars(args), "batch": batch}),
                                 device, peak, work)
                memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
                peer = peer_seconds(paths[name], data, batch, args, device)
                results.append({**row, "rows": rows, "batch": batch, "device_peak_mib": memory,
                                "peer_s": peer, "over_peer": peer / row["seconds"]})
                print(f"{name}: {rows} rows at batch {batch} in {row['seconds']:.1f} s "
                      f"(sentence-transformers {peer:.1f} s)", file=sys.stderr, flush=True)
    print(f"\n### Teacher extraction at scale on {where}: max length {args.max_length}, "
          f"{'bfloat16' if device.type == 'cuda' else 'float32'}; matmul peak {peak / 1e12:.3f} TFLOP/s\n")
    print("| teacher | attention | largest batch | rows | rows/s | real tokens/s | of matmul peak | device peak MiB | "
          "vs sentence-transformers |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        memory = f"{r['device_peak_mib']:.0f}" if r["device_peak_mib"] is not None else "-"
        print(f"| {r['teacher']} | {r['attention']} | {r['batch']} | {r['rows']:,} | {r['rows'] / r['seconds']:.0f} | "
              f"{r['tokens_per_s']:.0f} | {r['of_peak']:.1%} | {memory} | {r['over_peer']:.2f}x |")
    save(args, "gpu_scale.json", {"args": vars(args), "device": where, "matmul_peak": peak, "rows": results})
    if not (args.small or args.skeletons):  # a pass killed at 50% and resumed, on this device
        subprocess.run([sys.executable, str(Path(__file__).parent / "resume.py"), "--rows", "200000"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny random models, few texts: runs anywhere in seconds")
    parser.add_argument("--n", type=int, default=None, help="texts (default 4096, --small 64)")
    parser.add_argument("--batch", type=int, default=None, help="teacher batch (default 256, --small 16)")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 20, --small 5)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (on CPU)")
    parser.add_argument("--scale", action="store_true", help="only the at-scale part (see above)")
    parser.add_argument("--scale_rows", type=lambda v: [int(n) for n in v.split(",")], default=None,
                        help="comma-separated (default 10000,100000,1000000; --small 64,256)")
    parser.add_argument("--skeletons", type=Path, default=None,
                        help="the real models' architectures with random weights, from DIR (see above)")
    parser.add_argument("--make_skeletons", type=Path, default=None, help="write DIR for --skeletons and stop")
    parser.add_argument("--max_batch", type=int, default=None, help="largest batch tried (default 8192, --small 32)")
    args = parser.parse_args()
    if args.make_skeletons:
        return make_skeletons(args.make_skeletons)
    args.scale_rows = args.scale_rows or ([64, 256] if args.small else [10_000, 100_000, 1_000_000])
    args.max_batch = args.max_batch or (32 if args.small else 8192)
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
    if args.scale:
        return scale(args, device, peak, where)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = (tiny_models(work / "models") if args.small else real_models(work) if not args.skeletons
                  else skeleton_models(args.skeletons, work / "models"))
        student = models.pop("student")
        if args.skeletons:
            models = {f"{name} (random weights)": models[name] for name in ("all-mpnet-base-v2", "SmolLM2-135M")}
        data = texts_for(args.small, args.n, args.skeletons)
        rows = [extraction(name, spec, data, args, device, peak, work) for name, spec in models.items()]

        tokenizer = AutoTokenizer.from_pretrained(student)
        tokens = data.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=64),
                          batched=True)
        tokens = extract_teacher_features(tokens, next(iter(models.values())), max_length=64, device=device,
                                          cache_dir=work / "train-cache")
        train = tokens.select(range(min(len(data) // 2, 32 * args.steps)))
        labelled = set(train["text"])  # the pool: other texts, no label (hf-aft refuses a labelled text in it)
        pool = tokens.select(range(len(train), len(tokens))).filter(lambda row: row["text"] not in labelled)
        pool = pool.remove_columns("label")
        steps = {recipe: [] for recipe in RECIPES}
        for r in range(args.rounds):
            for recipe in (list(RECIPES) if r % 2 == 0 else list(RECIPES)[::-1]):
                steps[recipe] += step_times(recipe, student, train, pool, args.steps, device, work)

    print(f"\n### Teacher extraction on {where}: {args.n} texts, batch {args.batch}, max length {args.max_length}, "
          f"teacher dtype {'bfloat16' if device.type == 'cuda' else 'float32'}; matmul peak {peak / 1e12:.3f} "
          f"TFLOP/s ({str(dtype).split('.')[-1]}, {size}^3)\n")
    print("| teacher | attention | real tokens | time (s) | of which hashing + loading (s) | real tokens/s (without "
          "loading) | of matmul peak (without loading) | of matmul peak (whole call) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['teacher']} | {row['attention']} | {row['tokens']} | {row['seconds']:.2f} | "
              f"{row['load_s']:.2f} | {row['tokens_per_s']:.0f} | {row['of_peak']:.1%} | {row['of_peak_whole']:.1%} |")
    medians = {recipe: statistics.median(times) for recipe, times in steps.items()}
    print(f"\n### Training step on {where}: batch 32 x 64 tokens, {args.rounds} alternating rounds, "
          f"{len(steps['aft'])} timed steps each; +u: {len(pool)} unlabelled rows, half of each batch\n")
    print("| transfer | step median (ms) | / STL |")
    print("|---|---:|---:|")
    names = {"none": "none (STL)", "aft": "aft", "aft+distill+u": "aft + probe distillation + unlabelled"}
    for recipe, median in medians.items():
        print(f"| {names[recipe]} | {1000 * median:.1f} | {median / medians['none']:.3f} |")
    save(args, "gpu.json", {"args": vars(args), "device": where, "matmul_peak": peak, "extraction": rows,
                            "steps_s": steps})


if __name__ == "__main__":
    main()
