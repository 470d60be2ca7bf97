"""Resumable teacher extraction (issue 24): the time and disk of a resume after a pass is killed half-way.

    make bench-setup && .venv/bin/python bench/resume.py --rows 10000 --threads 1

One teacher (all-MiniLM-L6-v2, mean pooling, batch 32, max_length 128) over `--rows` Rotten Tomatoes texts (the
corpus repeated, each copy numbered so no two rows are the same text). Three passes, each in a fresh process:
1. uninterrupted, into an empty cache;
2. into another empty cache, killed with SIGKILL once half the blocks are finished;
3. the same command again, which resumes from the blocks pass 2 finished.
Printed: the blocks, the time of each pass, the resume's time over the uninterrupted pass's (ideal: the unfinished
share plus assembling), the rows the resume computed again beyond those pass 2 had not finished (goal: at most one
block), the partial folder's size at the kill, and whether the resumed cache file is byte-identical to pass 1's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets

from hf_aft.blocks import BLOCK_BATCHES
from hf_aft.demo import minilm_path, rotten_tomatoes

MAP_BATCH = 1024
SCRIPT = f"""
import sys, datasets
from hf_aft import extract_teacher_features
extract_teacher_features(datasets.load_from_disk(sys.argv[1]), [sys.argv[2]], cache_dir=sys.argv[3], batch_size=32,
                         max_length=128, pooling="mean", map_batch_size={MAP_BATCH})
"""


def numbered(texts: list[str], rows: int) -> list[str]:
    """`rows` distinct texts: `texts` repeated, each repeat numbered."""
    return [f"{texts[i % len(texts)]} ({i // len(texts)})" for i in range(rows)]


def corpus(rows: int, folder: Path) -> Path:
    texts = rotten_tomatoes(n_unlabeled=0)["train"]["text"]
    data = datasets.Dataset.from_dict({"text": numbered(texts, rows)})
    data.save_to_disk(str(folder))
    return folder


def start(data: Path, cache: Path, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(data), str(minilm_path()), str(cache)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def finished_blocks(cache: Path) -> int:
    return len(list(cache.glob(".partial-*/block-*.arrow.sha256.json")))


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hf_aft_resume_"))
    data = corpus(args.rows, root / "data")
    block_rows = BLOCK_BATCHES * MAP_BATCH
    blocks = -(-args.rows // block_rows)

    began = time.perf_counter()
    assert start(data, root / "whole", args.threads).wait() == 0
    full = time.perf_counter() - began

    began = time.perf_counter()
    process = start(data, root / "killed", args.threads)
    while finished_blocks(root / "killed") < max(1, blocks // 2):
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    until_kill, done = time.perf_counter() - began, finished_blocks(root / "killed")
    partial_mb = folder_mb(root / "killed")

    began = time.perf_counter()
    process = start(data, root / "killed", args.threads)
    _, stderr = process.communicate()
    resume = time.perf_counter() - began
    reused = re.search(r"(\d+) of (\d+) blocks", stderr)
    files = [next((root / name).glob("teacher-*.arrow")) for name in ("whole", "killed")]
    result = {"rows": args.rows, "block_rows": block_rows, "blocks": blocks, "full_s": full,
              "killed_after_s": until_kill,
              "blocks_done_at_kill": done, "blocks_reused": int(reused.group(1)) if reused else 0,
              "resume_s": resume, "resume_over_full": resume / full,
              "rows_recomputed_beyond_unfinished": (done - (int(reused.group(1)) if reused else 0)) * block_rows,
              "partial_folder_mb_at_kill": partial_mb, "identical": files[0].read_bytes() == files[1].read_bytes()}
    print("| rows | blocks (rows each) | full pass s | killed after s (blocks done) | resume s | resume / full | "
          "rows redone | partial folder MB | byte-identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.rows:,} | {blocks} ({block_rows:,}) | {full:.1f} | {until_kill:.1f} ({done}) | {resume:.1f} | "
          f"{resume / full:.2f} | {result['rows_recomputed_beyond_unfinished']} | {partial_mb:.1f} | "
          f"{result['identical']} |")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    with open("bench/results/resume.json", "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
