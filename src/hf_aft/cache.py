"""The feature cache: each teacher's features are a `Dataset.map` with an explicit fingerprint and an Arrow file in
one cache folder, so a second call with the same inputs loads that file and runs no teacher.

Under several processes (`accelerate launch`), each process runs the teacher on its contiguous shard of the data and
writes a shard file; the main process assembles the shards, in dataset order, into the same cache file one process
would have written, and the others wait for it (`main_process_first`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import datasets
import torch.distributed as dist
from datasets.fingerprint import Hasher

from .distributed import is_distributed

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

    def run(data, data_fingerprint, path):
        return data.map(lambda batch: {PART_COLUMN: teacher(batch[column])}, batched=True,
                        batch_size=map_batch_size, remove_columns=[column], new_fingerprint=data_fingerprint,
                        cache_file_name=str(path), desc=desc)

    if is_distributed() and not cache_file.exists():
        rank, world = dist.get_rank(), dist.get_world_size()
        shard_files = [cache_dir / f"teacher-{fingerprint}-shard{i}of{world}.arrow" for i in range(world)]
        shard = inputs.shard(num_shards=world, index=rank, contiguous=True)
        run(shard, Hasher.hash([fingerprint, rank, world]), shard_files[rank])
        dist.barrier()
        if rank == 0:
            _assemble_shards(shard_files, cache_file, fingerprint, map_batch_size)
        dist.barrier()
    return run(inputs, fingerprint, cache_file)  # loads the cache file when it exists


def _assemble_shards(shard_files: list[Path], cache_file: Path, fingerprint: str, map_batch_size: int) -> None:
    """Contiguous shards, concatenated in rank order: dataset order, in the one cache file."""
    shards = datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in shard_files])
    shards.map(batched=True, batch_size=map_batch_size, new_fingerprint=fingerprint, cache_file_name=str(cache_file),
               desc="Assembling shards")
    for path in shard_files:
        path.unlink(missing_ok=True)


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
