"""The sidecar checksum of a cache file (`NAME.sha256.json`: its size and sha256), written when the file is and
checked whenever it is read, so a cache file is never silently corrupt (cache.py, blocks.py, distillation.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .filesystems import write_atomically
from .teachers.content_hash import file_sha256

logger = logging.getLogger("hf_aft.cache")


def checksum_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def record_checksum(path: Path) -> None:
    """Write the sidecar of a cache file just written: its size and sha256 (to a temporary name, then renamed)."""
    record = {"file": path.name, "size": path.stat().st_size, "sha256": file_sha256(path)}
    write_atomically(checksum_file(path), json.dumps(record))


def verify(path: Path) -> bool:
    """True when the cache file is there and matches its sidecar (size and sha256); reads only."""
    try:
        record = json.loads(checksum_file(path).read_text())
        return record["size"] == path.stat().st_size and record["sha256"] == file_sha256(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def verify_or_drop(path: Path) -> bool:
    """`verify`, and a file that fails it (truncated, overwritten in place, unreadable, or without a sidecar) is
    deleted, with a one-line warning: the caller computes it again."""
    sidecar = checksum_file(path)
    if not path.exists():
        sidecar.unlink(missing_ok=True)
        return False
    valid = verify(path)
    if not valid:
        logger.warning("hf-aft: the feature cache file %s does not match its recorded checksum (damaged, incomplete "
                       "or unverified): deleted, computing it again.", path)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    return valid
