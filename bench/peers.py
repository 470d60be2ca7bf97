"""Teacher extraction against its peers: `hf_aft.extract_teacher_features` vs sentence-transformers'
`SentenceTransformer.encode` vs a bare length-sorted `torch.inference_mode` loop, and the share of the machine's
measured matmul peak each reaches.

Reproduce (CPU, 1 thread; about 15 minutes with both text teachers at the default sizes):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py --threads 1 --rounds 2

Text: Rotten Tomatoes training texts (`--n`, 2,000 by default), teachers all-MiniLM-L6-v2 and all-mpnet-base-v2
(`--teachers`), mean pooling, batch 32, max_length 128. Image: MobileNetV2 (ImageNet, pooler output) on `--images`
animal-mnist silhouettes, hf-aft vs a bare loop (no sentence-transformers there). The methods run in alternating
rounds (the order rotates each round) and the best time of each is reported; hf-aft gets a fresh cache folder each
round, so it really computes, and is timed whole (teacher hashing and loading and Arrow writes included: the part
spent hashing and loading is shown separately). The bare loop and sentence-transformers load their model once,
outside the timing. Features must agree to 1e-4: hf-aft vs the bare loop directly; sentence-transformers'
models end with a Normalize module, so they are compared after L2-normalising the bare loop's features (cosine).

Hardware limit: a 2048x2048 float32 matmul timed in every round, same thread count (best of each round's 5).
Model FLOPs are counted analytically on the real, unpadded tokens: 2 x (weights of the encoder's nn.Linear layers)
per token, plus 4 x L^2 x hidden per layer and sequence of length L (Q K^T and attention x V); softmax, layer norms,
GELU and embeddings are not counted. torch.utils.flop_counter.FlopCounterMode on one unpadded sequence is printed
beside it as a cross-check. Images: FlopCounterMode on one 224x224 image, times the number of images.
JSON goes to bench/results/peers-TEACHERS.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

import hf_aft.teachers.spec as teacher_spec
from hf_aft import extract_teacher_features
from hf_aft.demo import minilm_path, rotten_tomatoes
from hf_aft.teachers import ImageTeacher, TextTeacher, pool

RESULTS = Path(__file__).parent / "results"
BATCH, MAX_LENGTH = 32, 128
PROTOTYPES = {"global-sort": "hf-aft, one map block: a global length sort",
              "token-budget": "hf-aft, token-budget batches (prototype patch)"}


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` float32 size x size matmuls (after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def shape_rate(m: int, k: int, n: int, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` [m, k] x [k, n] float32 matmuls with a bias (nn.Linear's addmm)."""
    a, w, bias = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
    torch.nn.functional.linear(a, w, bias)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.nn.functional.linear(a, w, bias)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


@torch.inference_mode()
def token_budget_call(self, texts: list[str]) -> np.ndarray:
    """PROTOTYPE of `TextTeacher.__call__` (patched in, src/ untouched): length-sorted batches that hold up to
    batch_size x max_length tokens (padding included) instead of a fixed batch_size rows, so short texts run in
    larger batches (taller matmuls, fewer forward calls) at the peak memory of one fixed batch of the longest texts."""
    if self.model is None:
        self.load()
    encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
    ids, masks = encoded["input_ids"], encoded["attention_mask"]
    lengths = np.array([len(x) for x in ids])
    order = np.argsort(lengths, kind="stable")
    budget, out, start = self.batch_size * self.max_length, None, 0
    while start < len(order):
        stop = start + 1  # ascending lengths: the batch's last row is its longest
        while stop < len(order) and (stop + 1 - start) * lengths[order[stop]] <= budget:
            stop += 1
        chunk, start = order[start:stop], stop
        batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk], "attention_mask": [masks[i] for i in chunk]},
                                   return_tensors="pt").to(self.model.device)
        pooled = pool(self.model(**batch), batch["attention_mask"], self.pooling).float().cpu().numpy()
        self.forward_passes += 1
        if out is None:
            out = np.empty((len(order), pooled.shape[1]), dtype=np.float32)
        out[chunk] = pooled
    return out


def linear_weights(model) -> int:
    """Weights of the nn.Linear layers under the encoder (the matmuls run once per token)."""
    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layer." in f".{name}.")


def text_flops(model, lengths: np.ndarray) -> float:
    config = model.config
    return float(2 * linear_weights(model) * lengths.sum()
                 + 4 * config.num_hidden_layers * config.hidden_size * (lengths.astype(np.float64) ** 2).sum())


def counted_flops(model, inputs: dict) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops()


@torch.inference_mode()
def bare_text(texts: list[str], tokenizer, model) -> np.ndarray:
    """Tokenize all, sort by token count, pad and run each batch of 32, mean-pool over the mask."""
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), BATCH):
        chunk = order[start : start + BATCH]
        batch = tokenizer.pad({key: [encoded[key][i] for i in chunk] for key in ("input_ids", "attention_mask")},
                              return_tensors="pt")
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        out[chunk] = ((states * mask).sum(1) / mask.sum(1)).numpy()
    return out


@torch.inference_mode()
def bare_images(images: list, processor, model) -> np.ndarray:
    out = []
    for start in range(0, len(images), BATCH):
        pixels = processor(images=[im.convert("RGB") for im in images[start : start + BATCH]],
                           return_tensors="pt")["pixel_values"]
        out.append(model(pixel_values=pixels).pooler_output.flatten(1).numpy())
    return np.concatenate(out)


class LoadClock:
    """Seconds hf-aft spends hashing the teacher folder and loading the teacher, while active."""

    def __init__(self):
        self.seconds = 0.0
        hash_folder, load = teacher_spec.hash_folder, TextTeacher.load
        image_load = ImageTeacher.load

        def clocked(fn):
            def run(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - start
            return run

        self._patches = [mock.patch.object(teacher_spec, "hash_folder", clocked(hash_folder)),
                         mock.patch.object(TextTeacher, "load", clocked(load)),
                         mock.patch.object(ImageTeacher, "load", clocked(image_load))]

    def __enter__(self):
        for p in self._patches:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self._patches:
            p.stop()


def hf_aft_call(data, teacher: str, tmp: Path, **kwargs):
    cache = Path(tempfile.mkdtemp(dir=tmp))
    with LoadClock() as clock:
        out = extract_teacher_features(data, teacher, pooling=kwargs.pop("pooling", "mean"), batch_size=BATCH,
                                       max_length=MAX_LENGTH, cache_dir=cache, device="cpu", **kwargs)
    return np.asarray(out["teacher_features"], dtype=np.float32), clock.seconds


def run_rounds(methods: dict, rounds: int, peaks: list) -> tuple[dict, dict]:
    """Each method once per round, the order rotating; a matmul peak per round. Best time and last output of each."""
    times, outputs, names = {name: [] for name in methods}, {}, list(methods)
    for r in range(rounds):
        peaks.append(matmul_peak())
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            outputs[name] = methods[name]()
            times[name].append(time.perf_counter() - start)
    return times, outputs


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def table(title: str, times: dict, flops: float, peak: float, n: int, tokens: int | None, diffs: dict,
          load_s: float, reference: str) -> list[dict]:
    print(f"\n### {title}\n")
    print(f"| method | best time (s) | rows/s | {'real tokens/s | ' if tokens else ''}vs {reference} "
          "| model GFLOP/s | of matmul peak | max abs diff |")
    print(f"|---|---:|---:|{'---:|' if tokens else ''}---:|---:|---:|---:|")
    rows = []
    for name, values in times.items():
        best = min(values)
        row = {"method": name, "times_s": values, "best_s": best, "gflops": flops / best / 1e9,
               "of_peak": flops / best / peak, "vs_reference": min(times[reference]) / best, "diff": diffs.get(name)}
        rows.append(row)
        diff = f"{row['diff']:.1e}" if row["diff"] is not None else "-"
        print(f"| {name} | {best:.2f} | {n / best:.1f} | {f'{tokens / best:.0f} | ' if tokens else ''}"
              f"{row['vs_reference']:.2f}x | {row['gflops']:.1f} | {row['of_peak']:.1%} | {diff} |")
        if name == "hf-aft extract_teacher_features":
            rest = best - load_s
            rows.append({"method": name + " minus hashing+loading", "best_s": rest, "of_peak": flops / rest / peak,
                         "vs_reference": min(times[reference]) / rest})
            print(f"| (the same, minus its {load_s:.2f} s hashing + loading the teacher) | {rest:.2f} "
                  f"| {n / rest:.1f} | {f'{tokens / rest:.0f} | ' if tokens else ''}"
                  f"{min(times[reference]) / rest:.2f}x | {flops / rest / 1e9:.1f} | {flops / rest / peak:.1%} | - |")
    return rows


def text_teacher(name: str, folder: Path, texts: list[str], data, rounds: int, tmp: Path, peaks: list,
                 prototype: str) -> dict:
    from sentence_transformers import SentenceTransformer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    st = SentenceTransformer(str(folder), device="cpu")
    st.max_seq_length = MAX_LENGTH
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]])
    flops = text_flops(model, lengths)
    longest = int(np.argmax(lengths))
    one = tokenizer(texts[longest], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    check = (counted_flops(model, dict(one)), text_flops(model, lengths[longest : longest + 1]))
    load_s = []

    def hf_aft():
        out, seconds = hf_aft_call(data, str(folder), tmp)
        load_s.append(seconds)
        return out

    def patched():
        if prototype == "token-budget":
            with mock.patch.object(TextTeacher, "__call__", token_budget_call):
                return hf_aft_call(data, str(folder), tmp)[0]
        # One map block over the whole dataset = one global length sort (gc.collect now runs only after a GPU teacher).
        return hf_aft_call(data, str(folder), tmp, map_batch_size=len(data))[0]

    methods = {"hf-aft extract_teacher_features": hf_aft,
               PROTOTYPES[prototype]: patched,
               "sentence-transformers encode": lambda: st.encode(texts, batch_size=BATCH, convert_to_numpy=True),
               "bare length-sorted loop": lambda: bare_text(texts, tokenizer, model)}
    times, out = run_rounds(methods, rounds, peaks)
    bare = out["bare length-sorted loop"]
    diffs = {"hf-aft extract_teacher_features": float(np.abs(out["hf-aft extract_teacher_features"] - bare).max()),
             PROTOTYPES[prototype]: float(np.abs(out[PROTOTYPES[prototype]] - bare).max()),
             "sentence-transformers encode": float(np.abs(out["sentence-transformers encode"] - unit(bare)).max())}
    peak = max(peaks)
    rows = table(f"{name}: {len(texts)} texts, {int(lengths.sum())} real tokens (mean {lengths.mean():.1f}), "
                 f"{flops / 1e12:.2f} TFLOP, {torch.get_num_threads()} thread(s), best of {rounds}",
                 times, flops, peak, len(texts), int(lengths.sum()), diffs, min(load_s),
                 "sentence-transformers encode")
    print(f"\nFLOPs of its longest sequence ({lengths[longest]} tokens): FlopCounterMode {check[0] / 1e9:.3f} G, "
          f"analytic {check[1] / 1e9:.3f} G. Teacher hashing + loading inside hf-aft: {min(load_s):.2f} s.")
    hidden, inner = model.config.hidden_size, model.config.intermediate_size
    rows_32 = int(round(BATCH * lengths.mean()))
    rates = {m: [shape_rate(m, hidden, inner) / 1e9, shape_rate(m, hidden, hidden) / 1e9]
             for m in (rows_32, BATCH * MAX_LENGTH)}
    print("The model's own matmul shapes, measured alone (GFLOP/s, nn.Linear with bias): "
          + "; ".join(f"{m} tokens x {hidden} -> {inner}: {r[0]:.1f}, {m} x {hidden} -> {hidden}: {r[1]:.1f}"
                      for m, r in rates.items())
          + f" (a fixed batch of 32 texts holds about {rows_32} tokens; a token budget {BATCH * MAX_LENGTH}).")
    return {"teacher": name, "rows": rows, "flops": flops, "real_tokens": int(lengths.sum()),
            "flop_check": check, "shape_rates_gflops": rates, "hf_aft_load_s": load_s}


def image_teacher(folder: Path, n: int, rounds: int, tmp: Path, peaks: list) -> dict:
    from vision_quality import animal_mnist

    data = animal_mnist(n, 1)["train"].select_columns(["image"])
    images = list(data["image"])
    processor, model = AutoImageProcessor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    pixels = processor(images=[images[0].convert("RGB")], return_tensors="pt")["pixel_values"]
    flops = float(counted_flops(model, {"pixel_values": pixels}) * len(images))

    load_s = []

    def hf_aft():
        out, seconds = hf_aft_call(data, str(folder), tmp, image_column="image", pooling="auto")
        load_s.append(seconds)
        return out

    methods = {"hf-aft extract_teacher_features": hf_aft, "bare loop": lambda: bare_images(images, processor, model)}
    times, out = run_rounds(methods, rounds, peaks)
    diffs = {"hf-aft extract_teacher_features": float(np.abs(out["hf-aft extract_teacher_features"]
                                                             - out["bare loop"]).max())}
    rows = table(f"MobileNetV2 (ImageNet): {len(images)} animal-mnist images at 224x224, {flops / 1e12:.2f} TFLOP "
                 f"(FlopCounterMode), {torch.get_num_threads()} thread(s), best of {rounds}",
                 times, flops, max(peaks), len(images), None, diffs, min(load_s), "bare loop")
    return {"teacher": "mobilenet_v2", "rows": rows, "flops": flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="Rotten Tomatoes texts")
    parser.add_argument("--teachers", default="minilm,mpnet", help="comma-separated: minilm, mpnet (or empty)")
    parser.add_argument("--images", type=int, default=500, help="animal-mnist images for MobileNetV2 (0: skip)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prototype", choices=tuple(PROTOTYPES), default="global-sort",
                        help="which patched variant of hf-aft's extraction to time beside it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    from quality import mpnet_path
    from vision_quality import TEACHER

    data = rotten_tomatoes(args.n, 100, seed=0)["train"].select_columns(["text"])
    texts = list(data["text"])
    folders = {"all-MiniLM-L6-v2": minilm_path, "all-mpnet-base-v2": mpnet_path}
    wanted = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
    results, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for key in filter(None, args.teachers.split(",")):
            name = wanted[key]
            results.append(text_teacher(name, folders[name](), texts, data, args.rounds, Path(tmp), peaks,
                                        args.prototype))
        if args.images:
            results.append(image_teacher(TEACHER, args.images, args.rounds, Path(tmp), peaks))
    print(f"\nMatmul peak (2048x2048 float32, {torch.get_num_threads()} thread(s)): best {max(peaks) / 1e9:.1f} "
          f"GFLOP/s, per round {', '.join(f'{p / 1e9:.0f}' for p in peaks)}.")
    print(f"Load average (1/5/15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs.")
    RESULTS.mkdir(exist_ok=True)
    name = f"peers-{args.teachers.replace(',', '+') or 'images'}.json"
    out = {"args": vars(args), "matmul_peaks": peaks, "results": results}
    (RESULTS / name).write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
