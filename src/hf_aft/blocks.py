"""Resumable teacher extraction: one teacher's pass over the data runs as blocks of rows, each written to its own
Arrow file with a checksum in a partial folder beside the cache file (`.partial-teacher-FINGERPRINT/`). A pass that
stops (kill -9, Ctrl-C, a full disk) keeps the blocks it finished; the next pass verifies them, recomputes a damaged
one, computes only the missing ones, and assembles all of them, in row order, into the one cache file, which is then
byte-identical to an uninterrupted pass (each block is whole map batches, so the teacher sees the same batches).

Progress is one bar over the rows of the whole pass (rows done, rows/s, time left), starting at the rows an earlier
pass finished.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import datasets
from datasets.fingerprint import Hasher

from .checksums import checksum_file, record_checksum, verify_or_drop
from .faults import kept

logger = logging.getLogger(__name__)

BLOCK_BATCHES = 8  # map batches per block: 8,192 rows at the default map batch of 1,024 (about 25 MB of mpnet)


def partial_folder(cache_file: Path) -> Path:
    return cache_file.with_name(f".partial-{cache_file.stem}")


@contextmanager
def _quiet_datasets():
    """The pass's own bar replaces datasets' bar per block."""
    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield was
    finally:
        if was:
            datasets.enable_progress_bars()


def pass_blocks(cache_file: Path, total_rows: int, map_batch_size: int) -> list[tuple[int, int, Path]]:
    """(first row, end row, file) of each block of a pass over `total_rows` rows (one empty block for no rows): the
    file is named by its rows, so a block of another block size never passes for one of these."""
    rows, folder = BLOCK_BATCHES * map_batch_size, partial_folder(cache_file)
    ends = [(start, min(start + rows, total_rows)) for start in range(0, max(total_rows, 1), rows)]
    return [(start, stop, folder / f"block-{start:012d}-{stop:012d}.arrow") for start, stop in ends]


def extract_in_blocks(inputs: datasets.Dataset, run: Callable, cache_file: Path, fingerprint: str,
                      map_batch_size: int, desc: str) -> None:
    """Write `cache_file` (then its checksum is the caller's) from `run(block, block_fingerprint, path, first_row)`,
    a `Dataset.map` of the teacher over `block` into `path`, block by block as the module docstring says. Called
    under the cache file's lock."""
    folder = partial_folder(cache_file)
    folder.mkdir(exist_ok=True)
    _drop_temporary(folder)  # datasets' temporary file of a block whose process was killed
    blocks = pass_blocks(cache_file, len(inputs), map_batch_size)
    files = [path for _, _, path in blocks]
    _drop_other_blocks(folder, files, desc)
    done = [verify_or_drop(path) for path in files]
    done_rows = sum(stop - start for (start, stop, _), ok in zip(blocks, done, strict=True) if ok)
    if any(done):
        logger.warning("hf-aft: %s: resuming an interrupted pass, %d of %d blocks (%d of %d rows) already computed.",
                       desc, sum(done), len(files), done_rows, len(inputs))
    with _quiet_datasets() as show, _bar(len(inputs), done_rows, desc, show) as bar:
        for index, (start, stop, path) in enumerate(blocks):
            if done[index]:
                continue
            block_fingerprint = Hasher.hash([fingerprint, "block", index, BLOCK_BATCHES * map_batch_size])
            try:
                run(inputs.select(range(start, stop)), block_fingerprint, path, start)
                record_checksum(path)
            except BaseException:
                _note_kept(folder, files)  # the finished blocks stay for the next pass; nothing else does
                _drop_temporary(folder)
                if not any(folder.iterdir()):
                    folder.rmdir()
                raise
            bar.update(stop - start)
    _assemble(files, cache_file, fingerprint, map_batch_size)
    shutil.rmtree(folder, ignore_errors=True)


def remaining_bytes(cache_file: Path, total_rows: int, map_batch_size: int) -> int | None:
    """Bytes a pass still needs to finish (its missing blocks, then the assembled copy), from the width of a finished
    block of this pass (`pass_blocks`: blocks of another block size are computed again, so they count as missing);
    None before any block is done."""
    files = [path for _, _, path in pass_blocks(cache_file, total_rows, map_batch_size)]
    finished = [datasets.Dataset.from_file(str(path)) for path in files
                if path.exists() and checksum_file(path).exists()]
    if not finished:
        return None
    width = len(finished[0][0][finished[0].column_names[0]])
    return (2 * total_rows - sum(len(block) for block in finished)) * width * 4


def _drop_other_blocks(folder: Path, files: list[Path], desc: str) -> None:
    """Blocks are named by the rows they hold, so one from a pass with another block size (another
    `map_batch_size`, or another teacher batch, from which the default follows) is never taken for one of this pass's:
    it is dropped, and its rows are computed again."""
    names = {path.name for path in files}
    others = [path for path in folder.glob("block-*.arrow") if path.name not in names]
    for path in others:
        path.unlink(missing_ok=True)
        checksum_file(path).unlink(missing_ok=True)
    if others:
        logger.warning("hf-aft: %s: %d blocks of an interrupted pass with another map_batch_size (or teacher batch) "
                       "hold other rows than this pass's blocks: they are computed again.", desc, len(others))


def _drop_temporary(folder: Path) -> None:
    for leftover in folder.glob("tmp*"):
        leftover.unlink(missing_ok=True)


def _note_kept(folder: Path, files: list[Path]) -> None:
    finished = sum(1 for path in files if path.exists() and checksum_file(path).exists())
    if finished:
        kept.append(f"{finished} of {len(files)} blocks of a teacher's pass in {folder} (a rerun goes on from them)")


def _bar(total: int, initial: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=" rows", disable=not show or total == 0,
                dynamic_ncols=True)


def _assemble(files: list[Path], cache_file: Path, fingerprint: str, map_batch_size: int) -> None:
    """The blocks, in row order, written as the one cache file (to a temporary name in the partial folder first)."""
    blocks = datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in files])
    target = partial_folder(cache_file) / cache_file.name
    with _quiet_datasets():
        blocks.map(batched=True, batch_size=map_batch_size, new_fingerprint=fingerprint, cache_file_name=str(target))
    os.replace(target, cache_file)
