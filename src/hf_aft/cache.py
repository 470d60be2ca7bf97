"""The feature cache: each teacher's features are a `Dataset.map` with an explicit fingerprint and an Arrow file in
one cache folder, so a second call with the same inputs loads that file and runs no teacher.

Under several processes (`accelerate launch`), each process runs the teacher on its contiguous shard of the data and
writes a shard file; the main process assembles the shards, in dataset order, into the same cache file one process
would have written, and the others wait for it (`main_process_first`).

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
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import datasets
import torch.distributed as dist
from datasets.fingerprint import Hasher
from filelock import FileLock

from .distributed import is_distributed
from .teachers.spec import file_sha256

logger = logging.getLogger(__name__)

PART_COLUMN = "__hf_aft_teacher"  # a cached teacher's column, whatever its place among the teachers


def default_cache_dir() -> Path:
    return Path(datasets.config.HF_DATASETS_CACHE) / "hf_aft_features"


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

    def run(data, data_fingerprint, path, first_row=0):
        return data.map(lambda batch, rows: {PART_COLUMN: teacher(batch[column], rows=[first_row + r for r in rows])},
                        batched=True, with_indices=True, batch_size=map_batch_size, remove_columns=[column],
                        new_fingerprint=data_fingerprint, cache_file_name=str(path), desc=desc)

    if not is_distributed():
        return verified_map(cache_file, lambda: run(inputs, fingerprint, cache_file))
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


def checksum_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def record_checksum(path: Path) -> None:
    """Write the sidecar of a cache file just written: its size and sha256 (to a temporary name, then renamed)."""
    sidecar = checksum_file(path)
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"file": path.name, "size": path.stat().st_size, "sha256": file_sha256(path)}))
    tmp.replace(sidecar)


def verify_or_drop(path: Path) -> bool:
    """True when the cache file is there and matches its sidecar. A file that does not (truncated, overwritten in
    place, unreadable, or without a sidecar) is deleted, with a one-line warning, and False returned: the caller
    computes it again."""
    sidecar = checksum_file(path)
    if not path.exists():
        sidecar.unlink(missing_ok=True)
        return False
    try:
        record = json.loads(sidecar.read_text())
        valid = record["size"] == path.stat().st_size and record["sha256"] == file_sha256(path)
    except (OSError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        logger.warning("hf-aft: the feature cache file %s does not match its recorded checksum (damaged, incomplete "
                       "or unverified): deleted, computing it again.", path)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    return valid


def locked(path: Path) -> FileLock:
    """An exclusive lock for computing and writing one cache file (released if the process dies)."""
    return FileLock(str(path) + ".lock")


def verified_map(path: Path, make: Callable[[], datasets.Dataset]) -> datasets.Dataset:
    """`make()` is a `Dataset.map` whose `cache_file_name` is `path`: it loads the file when it exists, else computes
    and writes it. Under the file's lock: a file that fails its checksum is dropped first, and a file just written gets
    its checksum recorded."""
    with locked(path):
        written = not verify_or_drop(path)
        dataset = make()
        if written:
            record_checksum(path)
    return dataset


def pooling_record(cache_dir: Path, fingerprint: str, pooling: str) -> str:
    """The pooling a teacher actually used. An image teacher's `auto` is decided from its outputs, so whoever ran it
    records the decision beside the cache file, and a cache hit reads it back (`auto` when nobody recorded it)."""
    path = cache_dir / f"teacher-{fingerprint}.json"
    if pooling != "auto":
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"pooling": pooling}))
            tmp.replace(path)
        return pooling
    try:
        return json.loads(path.read_text())["pooling"]
    except (OSError, ValueError, KeyError):
        return "auto"
