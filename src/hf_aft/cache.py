"""The feature cache: each teacher's features are a `Dataset.map` with an explicit fingerprint and an Arrow file in
one cache folder, so a second call with the same inputs loads that file and runs no teacher.

Under several processes (`accelerate launch`), each process runs the teacher on its contiguous shard of the data and
writes a shard file; the main process assembles the shards, in dataset order, into the same cache file one process
would have written, and the others wait for it (`main_process_first`).

A cache that holds verified files is read without writing anything (no lock is taken to read), so a shared cache
mounted read-only works; a file that must be written into a read-only or full cache ends in one line naming the
folder and the way out. A file is computed in a private staging folder beside the cache and moved into place when
complete: a failure (full disk, a signal) leaves no partial or temporary file. A teacher's pass (single process) runs
in blocks that survive an interruption and resume (blocks.py).

A cache file cannot be silently corrupt: when it is written, the sha256 of its bytes goes into a sidecar
`NAME.arrow.sha256.json` (written to a temporary name, then renamed); when it is read, it is checked against it. A
file that does not match (truncated, overwritten, unreadable, or without its sidecar) is deleted and recomputed, with
a one-line warning. Each file is computed and written under a file lock (`NAME.arrow.lock`), so two runs filling the
same cache at once compute it once and never see half a file; `datasets` itself writes each file to a temporary name
in the same folder and renames it into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import datasets
import torch.distributed as dist
from datasets.fingerprint import Hasher
from filelock import FileLock

from .blocks import extract_in_blocks, remaining_bytes
from .checksums import checksum_file, file_sha256, record_checksum, verify, verify_or_drop  # noqa: F401 (re-exported)
from .distributed import is_distributed
from .errors import AFTError
from .faults import cached_files, disk_errno, disk_error
from .filesystems import nearest_existing, write_atomically
from .images import undecoded

logger = logging.getLogger(__name__)

PART_COLUMN = "__hf_aft_teacher"  # a cached teacher's column, whatever its place among the teachers


def default_cache_dir() -> Path:
    return Path(datasets.config.HF_DATASETS_CACHE) / "hf_aft_features"


def prepared_cache_dir(cache_dir=None) -> Path:
    """`cache_dir` (default: `default_cache_dir()`), made if missing; a folder that cannot be made is one AFTError
    (`require_writable`)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if not cache_dir.is_dir():
        require_writable(cache_dir, "any features yet")
        cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir


def teacher_cache_file(cache_dir: Path, fingerprint: str) -> Path:
    return cache_dir / f"teacher-{fingerprint}.arrow"


class main_process_first:  # noqa: N801 (used like accelerate's context manager of the same name)
    """Process 0 runs the block first (writing the cache), the others afterwards (reading it)."""

    def __enter__(self):
        if is_distributed() and dist.get_rank() != 0:
            dist.barrier()

    def __exit__(self, *exc):
        if is_distributed() and dist.get_rank() == 0:
            dist.barrier()


def cached_teacher_column(inputs: datasets.Dataset, teacher: Callable, column: str, fingerprint: str, cache_dir: Path,
                          map_batch_size: int, desc: str) -> datasets.Dataset:
    """`teacher(batch[column])` over `inputs` as a one-column dataset (`PART_COLUMN`), read from its cache file when
    one exists, else computed (sharded over processes when distributed) and written there."""
    cache_file = teacher_cache_file(cache_dir, fingerprint)
    inputs = undecoded(inputs, column)  # the teacher decodes each image itself (to_rgb): a bad file is one line

    def run(data, data_fingerprint, path, first_row=0):
        return data.map(lambda batch, rows: {PART_COLUMN: teacher(batch[column], rows=[first_row + r for r in rows])},
                        batched=True, with_indices=True, batch_size=map_batch_size, remove_columns=[column],
                        new_fingerprint=data_fingerprint, cache_file_name=str(path), desc=desc)

    if not is_distributed():  # block by block, resumable (blocks.py)
        return verified_map(cache_file, lambda path: run(inputs, fingerprint, path),
                            needed_bytes=lambda: remaining_bytes(cache_file, len(inputs), map_batch_size),
                            compute=lambda: extract_in_blocks(inputs, run, cache_file, fingerprint, map_batch_size,
                                                              desc),
                            kept="the blocks computed so far are kept and a rerun goes on from them")
    if verify(cache_file):  # every process reads a verified file without a lock (a read-only cache works)
        return run(inputs, fingerprint, cache_file)
    require_writable(cache_dir, f"the features of {desc}")
    rank, world = dist.get_rank(), dist.get_world_size()
    with locked(cache_file) if rank == 0 else nullcontext():  # one lock per run: its main process holds it
        with main_process_first():  # the main process checks (and drops a damaged file) before the others look
            present = verify_or_drop(cache_file) if rank == 0 else cache_file.exists()
        if not present:
            shard_files = [cache_dir / f"teacher-{fingerprint}-shard{i}of{world}.arrow" for i in range(world)]
            shard = inputs.shard(num_shards=world, index=rank, contiguous=True)
            start = (len(inputs) // world) * rank + min(rank, len(inputs) % world)  # as `shard(contiguous=True)`
            run(shard, Hasher.hash([fingerprint, rank, world]), shard_files[rank], start)
            dist.barrier()
            if rank == 0:
                _assemble_shards(shard_files, cache_file, fingerprint, map_batch_size)
                record_checksum(cache_file)
            dist.barrier()
        return run(inputs, fingerprint, cache_file)  # loads the cache file


def _assemble_shards(shard_files: list[Path], cache_file: Path, fingerprint: str, map_batch_size: int) -> None:
    """Contiguous shards, concatenated in rank order: dataset order, in the one cache file."""
    shards = datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in shard_files])
    shards.map(batched=True, batch_size=map_batch_size, new_fingerprint=fingerprint, cache_file_name=str(cache_file),
               desc="Assembling shards")
    for path in shard_files:
        path.unlink(missing_ok=True)


def locked(path: Path) -> FileLock:
    """An exclusive lock for computing and writing one cache file (released if the process dies)."""
    return FileLock(str(path) + ".lock")


def store_or_warn(path: Path, tmp: Path, write: Callable[[Path], None], what: str, lost: str) -> None:
    """Write a small cache file that is cheap to remake (a probe fit, generated texts): `write(tmp)`, then `tmp`
    renamed into place under its lock, with its checksum. A cache that cannot take it (read-only, full) only means
    the next run makes it again: one warning ("`what` not cached in FOLDER (why): `lost`"), nothing left behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            write(tmp)
            tmp.replace(path)
            record_checksum(path)
    except OSError as error:
        logger.warning("hf-aft: %s not cached in %s (%s): %s", what, path.parent, error.strerror or error, lost)
        for leftover in (tmp, path, Path(str(path) + ".lock")):
            leftover.unlink(missing_ok=True)


def require_writable(folder: Path, what: str) -> None:
    """Before a write into the cache: a folder that cannot be written is one line, not an OSError.

    Raises:
        AFTError: `folder` is not writable (a read-only mount, no permission).
    """
    if not os.access(nearest_existing(folder), os.W_OK | os.X_OK):
        raise AFTError(f"the feature cache {str(folder)!r} is read-only and does not hold {what}: set "
                       "HF_DATASETS_CACHE to a writable folder (a read-only cache is read as it is when it holds "
                       "every feature a run needs).")


def verified_map(path: Path, make: Callable[[Path], datasets.Dataset],
                 needed_bytes: int | Callable[[], int | None] | None = None, compute: Callable[[], None] | None = None,
                 kept: str = "the cache files already there are kept") -> datasets.Dataset:
    """`make(target)` is a `Dataset.map` whose `cache_file_name` is `target`: it loads the file when it exists, else
    computes and writes it. A verified file is loaded without a lock. Otherwise, under the file's lock: a file that
    fails its checksum is dropped, the new one is written by `compute()` (default: `make` into a staging folder, then
    moved into place) and its checksum recorded. A full or read-only disk is one line (`needed_bytes`: the bytes
    still needed, when known; `kept`: what stays); no temporary file or lock is left behind.

    Raises:
        AFTError: the cache cannot be written.
    """
    if verify(path):
        return make(path)
    require_writable(path.parent, f"the file {path.name}")
    try:
        with locked(path):
            if not verify_or_drop(path):
                (compute or (lambda: _compute_staged(path, make)))()
                record_checksum(path)
                cached_files.append(str(path))  # what an interrupted command says it kept
    except BaseException as error:
        Path(str(path) + ".lock").unlink(missing_ok=True)  # no lock left behind by a run that could not write
        if disk_errno(error) is None:
            raise
        needed = needed_bytes() if callable(needed_bytes) else needed_bytes
        raise disk_error(error, path.parent, needed, f"free space there or set HF_DATASETS_CACHE to another folder; "
                         f"{kept}") from error
    return make(path)


def _compute_staged(path: Path, make: Callable[[Path], datasets.Dataset]) -> None:
    """Compute into `.staging-NAME/` (datasets puts its temporary file beside its target), then move the file into
    place; the staging folder goes whatever happens. Called under the file's lock, so a staging folder left by a
    killed process is this file's and is cleared first."""
    staging = path.with_name(f".staging-{path.stem}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        make(staging / path.name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pooling_record(cache_dir: Path, fingerprint: str, pooling: str) -> str:
    """The pooling a teacher actually used. An image teacher's `auto` is decided from its outputs, so whoever ran it
    records the decision beside the cache file, and a cache hit reads it back (`auto` when nobody recorded it)."""
    path = cache_dir / f"teacher-{fingerprint}.json"
    if pooling != "auto":
        if not path.exists() and os.access(cache_dir, os.W_OK):  # a read-only cache keeps what it has
            try:
                write_atomically(path, json.dumps({"pooling": pooling}))
            except OSError:  # a full disk: the record is only needed for `auto`, which this is not
                pass
        return pooling
    try:
        return json.loads(path.read_text())["pooling"]
    except (OSError, ValueError, KeyError):
        return "auto"
