"""Resumable teacher extraction (issue 24): a pass killed after some blocks goes on from them, and its cache file is
byte-identical to an uninterrupted pass; a damaged block is recomputed; the partial folder goes once the file is
whole."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import tiny

from hf_aft import extract_teacher_features
from hf_aft.blocks import remaining_bytes

ROWS, MAP_BATCH = 240, 10  # blocks of 8 x 10 = 80 rows: 3 blocks
SCRIPT = textwrap.dedent("""
    import sys, datasets
    from hf_aft import extract_teacher_features
    data = datasets.load_from_disk(sys.argv[1])
    extract_teacher_features(data, [sys.argv[2]], cache_dir=sys.argv[3], map_batch_size={batch}, batch_size=1)
""").format(batch=MAP_BATCH)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resumable")
    teacher = tiny.save_teacher(root / "teacher", hidden=12)
    texts = [" ".join(["word"] * (1 + i % 40)) + f" {i}" for i in range(ROWS)]
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(root / "data"))
    data = datasets.load_from_disk(str(root / "data"))  # the fingerprint the killed process keys its cache by
    whole = root / "whole"
    extract_teacher_features(data, [str(teacher)], cache_dir=whole, map_batch_size=MAP_BATCH, batch_size=1)
    return root, teacher, data, _teacher_file(whole)


def _teacher_file(cache: Path) -> Path:
    (path,) = cache.glob("teacher-*.arrow")
    return path


def _finished_blocks(cache: Path) -> list[Path]:
    return sorted(cache.glob(".partial-*/block-*.arrow.sha256.json"))


def _kill_after_blocks(setup, cache: Path, blocks: int) -> int:
    """Run a pass in a fresh process and kill -9 it once `blocks` blocks are finished; returns how many were."""
    root, teacher, _, _ = setup
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root / "data"), str(teacher), str(cache)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while len(_finished_blocks(cache)) < blocks:
        assert process.poll() is None, "the pass ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list(cache.glob("teacher-*.arrow")), "the pass finished before the kill"
    return len(_finished_blocks(cache))


def _resume(setup, cache: Path, caplog) -> Path:
    _, teacher, data, _ = setup
    with caplog.at_level(logging.WARNING), caplog.at_level(logging.WARNING, logger="hf_aft"):
        extract_teacher_features(data, [str(teacher)], cache_dir=cache, map_batch_size=MAP_BATCH, batch_size=1)
    return _teacher_file(cache)


def test_a_killed_pass_resumes_from_its_blocks_and_matches_an_uninterrupted_one(setup, tmp_path, caplog):
    cache = tmp_path / "cache"
    finished = _kill_after_blocks(setup, cache, blocks=1)
    assert 1 <= finished < 3
    resumed = _resume(setup, cache, caplog)
    assert f"{finished} of 3 blocks" in caplog.text
    assert resumed.read_bytes() == setup[3].read_bytes()
    assert not list(cache.glob(".partial-*")) and not list(cache.glob("tmp*"))


def test_a_damaged_block_is_computed_again(setup, tmp_path, caplog):
    cache = tmp_path / "cache"
    finished = _kill_after_blocks(setup, cache, blocks=1)
    block = Path(str(_finished_blocks(cache)[0]).removesuffix(".sha256.json"))
    block.write_bytes(block.read_bytes()[: block.stat().st_size // 2])  # truncated
    resumed = _resume(setup, cache, caplog)
    assert "does not match its recorded checksum" in caplog.text
    assert f"{finished - 1} of 3 blocks" in caplog.text or finished == 1
    assert resumed.read_bytes() == setup[3].read_bytes()


def test_an_uninterrupted_pass_leaves_only_the_cache_file(setup):
    cache = setup[3].parent
    assert not list(cache.glob(".partial-*")) and not list(cache.glob(".staging-*"))
    assert setup[3].with_name(setup[3].name + ".sha256.json").exists()


def test_a_pass_resumed_with_another_map_batch_size_recomputes_the_blocks_it_cannot_reuse(setup, tmp_path, caplog):
    """Blocks hold `8 x map_batch_size` rows: a rerun with another size (or another teacher batch, from which the
    default size follows) must not take a finished block for one of its own, which covers other rows."""
    _, teacher, data, whole = setup
    cache = tmp_path / "cache"
    finished = _kill_after_blocks(setup, cache, blocks=1)  # blocks of 80 rows
    (partial,) = cache.glob(".partial-*")
    cache_file = cache / (partial.name.removeprefix(".partial-") + ".arrow")
    expected = datasets.Dataset.from_file(str(whole))
    width = len(expected[0][expected.column_names[0]])
    assert remaining_bytes(cache_file, ROWS, MAP_BATCH) == (2 * ROWS - 8 * MAP_BATCH * finished) * width * 4
    assert remaining_bytes(cache_file, ROWS, 2 * MAP_BATCH) is None  # the disk check counts none of them as done
    with caplog.at_level(logging.WARNING, logger="hf_aft"):
        out = extract_teacher_features(data, [str(teacher)], cache_dir=cache, map_batch_size=2 * MAP_BATCH,
                                       batch_size=1)
    assert "another map_batch_size" in caplog.text
    assert out.num_rows == ROWS == expected.num_rows
    got, want = np.asarray(out["teacher_features"]), np.asarray(expected[expected.column_names[0]])
    np.testing.assert_allclose(got, want, atol=1e-5)  # batch size 1: the same numbers whatever the block size
    assert not list(cache.glob(".partial-*"))
