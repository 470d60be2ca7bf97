"""Teacher features at the scale of an unlabelled pool (issue 24): extraction speed and memory by rows and backend,
side by side with sentence-transformers, then training on a memory-mapped million-row column and a resume after a
kill at 50%. One script, one table per part.

    make bench-setup && .venv/bin/python bench/scale.py                     # all parts, this machine's sizes
    .venv/bin/python bench/scale.py --parts extraction --rows 10000,100000 --teachers minilm

Parts (`--parts`, comma-separated):
- `extraction`: for each teacher (`--teachers`: minilm = all-MiniLM-L6-v2, mpnet = all-mpnet-base-v2), each size
  (`--rows`) and each backend (`--backends`: torch, onnxruntime, onnxruntime-int8), one fresh process runs
  `hf_aft.extract_teacher_features` (mean pooling, batch 32, max length 128, an empty features cache) and one runs
  `SentenceTransformer.encode` (batch 32, max_seq_length 128) on the same texts. Texts: the Rotten Tomatoes corpus
  repeated, each copy numbered (bench/resume.py), so the length distribution is that of real review snippets (mean
  about 27 tokens). Reported: rows/s over the whole call (loading and writing the Arrow file included; the ONNX export
  is made once beforehand and its seconds shown apart), the ratio to sentence-transformers' rows/s in the same run,
  the peak private memory (RssAnon, sampled every 10 ms; memory-mapped Arrow pages are the kernel's page cache and
  are not counted), and the lowest cosine of the first 512 rows' features to eager PyTorch's.
- `pipeline`: the same extraction at `--pipeline_rows` (default up to 1,000,000) with a random 1-layer, 32-wide BERT
  teacher that reads MiniLM's tokenizer: what memory the pipeline itself (tokenising, blocks, Arrow writes) needs as
  rows grow, in minutes rather than the hours a real teacher takes on 2 cores.
- `training`: bench/memory.py with its 1M-row point: step time and memory of AFT training on a memory-mapped column.
- `resume`: bench/resume.py on 32,768 rows (4 blocks of 8,192): a pass killed after 2 blocks (50%) and resumed.
JSON goes to bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
BATCH, MAX_LENGTH, SAMPLE = 32, 128, 512
PEER = "sentence-transformers"
THREADS = 2  # --threads: the intra-op threads of every measured process (torch, onnxruntime, sentence-transformers)


def teacher_path(name: str) -> Path:
    """all-MiniLM-L6-v2 from its package; all-mpnet-base-v2 unzipped once into runs/bench/teachers (quality.py)."""
    sys.path.insert(0, str(BENCH))
    from quality import mpnet_path

    from hf_aft.demo import minilm_path

    return minilm_path() if name == "minilm" else mpnet_path()


def worker(args) -> None:
    """One measured call in this fresh process; writes seconds, peak RssAnon and the first rows' features."""
    sys.path.insert(0, str(BENCH))
    from memory import Sampler

    sampler = Sampler()
    sampler.start()
    import datasets

    data = datasets.load_from_disk(args.data)
    began = time.perf_counter()
    if args.backend == PEER:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(args.teacher, device="cpu")
        model.max_seq_length = MAX_LENGTH
        features = model.encode(data["text"], batch_size=BATCH, convert_to_numpy=True)
    else:
        from hf_aft import extract_teacher_features
        from hf_aft.errors import AFTError

        try:
            out = extract_teacher_features(data, [args.teacher], pooling="mean", batch_size=BATCH,
                                           max_length=MAX_LENGTH, cache_dir=args.cache, backend=args.backend,
                                           device="cpu")
        except AFTError as error:  # e.g. int8 refused for a teacher it quantises too coarsely: a row that says so
            Path(args.result).write_text(json.dumps({"refused": str(error)}))
            return
        features = out.select(range(min(SAMPLE, len(out))))["teacher_features"]
    seconds = time.perf_counter() - began
    sampler.running = False
    np.save(args.result + ".npy", np.asarray(features[:SAMPLE], np.float32))
    Path(args.result).write_text(json.dumps({"seconds": seconds, "rss_anon_mib": sampler.peaks["RssAnon"] / 1024}))


def measure(teacher: Path, backend: str, data: Path, cache: Path, tmp: Path) -> dict:
    result = tmp / f"result-{time.monotonic_ns()}.json"
    command = [sys.executable, __file__, "--worker", "--teacher", str(teacher), "--backend", backend, "--data",
               str(data), "--cache", str(cache), "--result", str(result)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{backend} on {data.name} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(result.read_text())
    return measured if "refused" in measured else {**measured, "features": np.load(str(result) + ".npy")}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def extraction(teachers: list[str], sizes: list[int], backends: list[str], tmp: Path, label: str) -> list[dict]:
    """Rows/s, memory and fidelity per teacher, size and backend, each beside sentence-transformers."""
    sys.path.insert(0, str(BENCH))
    from resume import corpus

    rows_out = []
    for name in teachers:
        teacher = teacher_path(name) if name in ("minilm", "mpnet") else Path(name)
        exports, usable = {}, list(backends)
        for backend in backends:  # the one-off export, outside the timed runs (its own cache folder per backend)
            if backend != "torch":
                began = time.perf_counter()
                warm = measure(teacher, backend, corpus(64, tmp / f"warm-{name}-{backend}"), tmp / f"cache-{backend}",
                               tmp)
                exports[backend] = time.perf_counter() - began
                if "refused" in warm:
                    usable.remove(backend)
                    print(f"| {name} | - | {backend} | refused: {warm['refused'][:200]} |||||", flush=True)
        for size in sizes:
            data = corpus(size, tmp / f"data-{size}")
            runs = {b: measure(teacher, b, data, tmp / f"cache-{b}", tmp) for b in [*usable, PEER]
                    if b != PEER or name in ("minilm", "mpnet")}
            peer = runs.get(PEER)
            for backend, run in runs.items():
                if "refused" in run:
                    rows_out.append({"teacher": label or name, "rows": size, "backend": backend, **run})
                    print(f"| {label or name} | {size:,} | {backend} | refused: {run['refused'][:160]} |||||",
                          flush=True)
                    continue
                row = {"teacher": label or name, "rows": size, "backend": backend, "rows_per_s": size / run["seconds"],
                       "rss_anon_mib": run["rss_anon_mib"], "export_s": exports.get(backend),
                       "over_peer": peer["seconds"] / run["seconds"] if peer else None,
                       "min_cosine_to_torch": min_cosine(run["features"], runs["torch"]["features"])}
                rows_out.append(row)
                over = f"{row['over_peer']:.2f}x" if peer else "-"
                export = f"{row['export_s']:.0f}" if row["export_s"] else "-"
                print(f"| {row['teacher']} | {size:,} | {backend} | {row['rows_per_s']:.0f} | {over} | "
                      f"{row['rss_anon_mib']:.0f} | {row['min_cosine_to_torch']:.6f} | {export} |", flush=True)
            for path in tmp.glob("cache-*/*.arrow"):  # the next size starts from an empty features cache
                path.unlink()
    return rows_out


def tiny_teacher(folder: Path) -> Path:
    """A random 1-layer, 32-wide BERT with MiniLM's tokenizer: the pipeline's cost without a real teacher's."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hf_aft.demo import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="extraction,pipeline,training,resume")
    parser.add_argument("--teachers", default="minilm,mpnet")
    parser.add_argument("--rows", default="10000")
    parser.add_argument("--backends", default="torch,onnxruntime,onnxruntime-int8")
    parser.add_argument("--pipeline_rows", default="10000,100000,1000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--teacher", "--backend", "--data", "--cache", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    global THREADS
    THREADS = args.threads
    import datasets

    datasets.disable_progress_bars()  # the corpora's "Saving the dataset" bars, between the table's rows
    parts, results = args.parts.split(","), {"args": vars(args)}
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="hf_aft_scale_") as tmp:
        tmp = Path(tmp)
        if "extraction" in parts or "pipeline" in parts:
            print("\n| teacher | rows | backend | rows/s | vs sentence-transformers | peak private MiB | "
                  "lowest cosine to torch | export s |\n|---|---:|---|---:|---:|---:|---:|---:|", flush=True)
        if "extraction" in parts:
            sizes = [int(n) for n in args.rows.split(",")]
            results["extraction"] = extraction(args.teachers.split(","), sizes, backends, tmp, "")
        if "pipeline" in parts:
            sizes = [int(n) for n in args.pipeline_rows.split(",")]
            results["pipeline"] = extraction([str(tiny_teacher(tmp / "tiny"))], sizes, ["torch"], tmp,
                                             "random 1-layer BERT (pipeline)")
    for part, script, extra in (("training", "memory.py", ["--million"]),
                                ("resume", "resume.py", ["--rows", "32768", "--threads", "2"])):
        if part in parts:
            done = subprocess.run([sys.executable, str(BENCH / script), *extra], text=True)
            if done.returncode != 0:
                sys.exit(f"bench/{script} failed")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scale.json"  # each part's rows replace that part's earlier ones; other parts' rows are kept
    earlier = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**earlier, **results}, indent=2))


if __name__ == "__main__":
    main()
