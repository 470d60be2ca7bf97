"""Which filesystem holds a path (Linux, from /proc/self/mounts): a folder on a kernel pseudo filesystem such as /proc
or /sys cannot be created although `os.access` says the parent is writable (as root it always does), and a
read-only mount is worth naming as such. Elsewhere nothing is known and nothing is refused."""

from __future__ import annotations

import os
import re

# Kernel filesystems that hold no folders of files (mkdir fails, or makes a kernel object: a cgroup, a config item).
PSEUDO_FILESYSTEMS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs", "configfs",
                      "pstore", "bpf", "efivarfs", "mqueue", "fusectl", "binfmt_misc", "nsfs", "rpc_pipefs",
                      "hugetlbfs"}
MOUNTS = "/proc/self/mounts"


def nearest_existing(path: str | os.PathLike) -> str:
    """`path` itself when it exists, else its nearest existing parent: where a folder would be created, and whose
    permissions and filesystem decide whether it can be."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _unescape(field: str) -> str:
    """A mount point as /proc/self/mounts writes it: spaces and tabs as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_of(path: str) -> tuple[str, bool] | None:
    """(filesystem type, mounted read-only) of the mount holding the existing `path`: the longest mount point above
    it; None where the mount table cannot be read (not Linux)."""
    try:
        with open(MOUNTS) as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    path = os.path.realpath(path)
    best = None
    for fields in mounts:
        if len(fields) < 4:
            continue
        point = _unescape(fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # the later of two mounts on one point wins
            best = (point, fields[2], "ro" in fields[3].split(","))
    return (best[1], best[2]) if best else None


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, renamed into place: a reader sees the old file or
    the whole new one, never half of it. Raises OSError (read-only, full disk) with nothing left behind."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
