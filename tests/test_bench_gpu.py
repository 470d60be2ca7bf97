"""bench/gpu.py --small runs on CPU (tiny random models built in the script) and prints both of its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"


def test_gpu_bench_small_prints_its_tables(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    result = subprocess.run([sys.executable, str(SCRIPT), "--small", "--rounds", "1"], capture_output=True, text=True,
                            timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "### Teacher extraction on" in out and "### Training step on" in out
    assert "| mpnet (tiny random) |" in out and "| llama (tiny random) |" in out
    assert "| none (STL) |" in out and "| aft |" in out


def test_gpu_bench_scale_small_prints_its_table(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    result = subprocess.run([sys.executable, str(SCRIPT), "--small", "--scale"], capture_output=True, text=True,
                            timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "### Teacher extraction at scale on" in out
    rows = [line for line in out.splitlines() if line.startswith("| mpnet (tiny random) |")]
    assert len(rows) == 2 and all("| eager |" in row and row.endswith("x |") for row in rows)
    assert "| 32 |" in rows[0]  # the largest batch tried (--max_batch 32 with --small) fits
