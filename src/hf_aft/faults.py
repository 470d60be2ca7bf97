"""What the machine does to a command, as one line each: a signal (Ctrl-C, a scheduler's SIGTERM) and a disk that
is full or read-only. Bad input is `AFTError` (errors.py); these are the faults around a run."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import threading
from contextlib import contextmanager

from .errors import AFTError

DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system"}
# Libraries that write through Rust or C (safetensors, Arrow) report the errno inside their own message.
_MESSAGE = re.compile(r"(?:os error|errno)\s*(\d+)|No space left on device|Not enough disk space|"
                      r"Read-only file system|StorageFull", re.IGNORECASE)


class DiskError(AFTError):
    """A full or read-only disk, said in one line that names the folder (`disk_error`)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like SIGINT's KeyboardInterrupt so every `finally` and cleanup runs on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_as_interrupts():
    """SIGTERM raises `Interrupted` for the block (SIGINT already raises KeyboardInterrupt); the previous handler
    comes back after it. Only the main thread can set handlers: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports it: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


# What a command that ends by a failure or a signal keeps, for its one line (claims.py, cache.py and blocks.py add
# to it). Plain data in a module `hf-aft` imports first: the line must not import anything (a signal can land while
# `datasets` is half imported).
kept: list[str] = []
lost: list[str] = []  # work a rerun must do again (generated texts where no progress file could be written)
removed: list[str] = []  # output dirs this command created and removed when it failed
cached_files: list[str] = []  # teacher feature files written by this process


def interrupted_line(interrupt: KeyboardInterrupt) -> str:
    name = signal.Signals(getattr(interrupt, "signum", signal.SIGINT)).name
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    if rank != "0" and world != "1":  # a launched run's other process: only the main one holds the output dir
        return f"hf-aft: interrupted by {name} (process {rank} of {world}: the main process says what was kept)."
    present = [path for path in cached_files if os.path.exists(path)]
    what = ([f"{len(present)} teacher feature file(s) in {os.path.dirname(present[0])} (a rerun reuses them)"]
            if present else []) + kept
    resume = any("--resume_from_checkpoint" in item for item in what)
    how = ("Add that --resume_from_checkpoint to the same command to go on" if resume
           else "Run the same command again to go on")
    what_text = "; ".join(what) if what else "no output of this command" + (
        f" (the output dir it created, {removed[0]}, was removed)" if removed else "")
    not_kept = f"; not kept: {'; '.join(lost)}" if lost else ""
    return f"hf-aft: interrupted by {name}: kept {what_text}{not_kept}. {how}."


def disk_errno(error: BaseException) -> int | None:
    """The errno of a full or read-only disk behind `error` (its chain of causes included), else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return error.errno
        match = _MESSAGE.search(str(error))
        if match:
            number = int(match.group(1)) if match.group(1) else (
                errno.EROFS if "read-only" in match.group(0).lower() else errno.ENOSPC)
            if number in DISK_ERRORS:
                return number
        error = error.__cause__ or error.__context__
    return None


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def disk_error(error: BaseException, folder: str | os.PathLike | None = None, needed: int | None = None,
               way_out: str = "free space there, or write elsewhere (--output_dir, HF_DATASETS_CACHE)") -> DiskError:
    """One line for a full or read-only disk: what happened, where, the bytes needed and free when known, the way
    out. Call only when `disk_errno(error)` is not None."""
    number = disk_errno(error)
    folder = folder or getattr(error, "filename", None)
    if folder is None:
        return DiskError(f"{DISK_ERRORS[number]}: {way_out}.")
    where = os.path.dirname(folder) if os.path.isfile(folder) else folder
    sizes = ""
    if number != errno.EROFS:
        try:
            free = shutil.disk_usage(where).free
            sizes = (f" (about {_megabytes(needed)} needed, {_megabytes(free)} free)" if needed
                     else f" ({_megabytes(free)} free)")
        except OSError:
            pass
    return DiskError(f"{DISK_ERRORS[number]} writing {str(where)!r}{sizes}: {way_out}.")


__all__ = ["DiskError", "Interrupted", "kept", "disk_errno", "disk_error", "exit_status", "interrupted_line",
           "signals_as_interrupts"]
