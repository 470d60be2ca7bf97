"""One command per output at a time: a command that writes an output dir (train, features, export) or an output file
(rank-teachers) claims it when it starts, and releases the claim when it ends.

The claim is a small JSON file (`.hf_aft_claim.json` in a folder, `.NAME.hf_aft_claim.json` beside a file) created
with an exclusive create (`O_CREAT | O_EXCL`), so of two commands started together exactly one gets it; the other
ends in one line naming the first (command, pid, host, start). A claim whose process is gone (killed, or its machine
rebooted) is stale: it is named in a warning and taken over. Each claim carries a run id; the files a run writes
that can hold one (config.json, transfer_summary.json, the card's inputs, the cost report, audit.json) record it, so
`hf-aft audit` can tell a file of another run, and a run that finds its folder changed under it fails instead of
exiting 0.

A command that fails or is interrupted removes an output dir it created, unless it holds checkpoints to resume from,
so no folder is left that looks like a run.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from .errors import AFTError
from .faults import DiskError, disk_errno, disk_error, kept, removed
from .finished_marker import file_signatures, put_back

logger = logging.getLogger(__name__)

CLAIM_NAME = ".hf_aft_claim.json"
RUN_ID_KEY = "hf_aft_run_id"
_current_run = contextvars.ContextVar("hf_aft_run_id", default=None)


def current_run_id() -> str | None:
    """The run id of the claim this code runs under (None outside `claimed`, e.g. AFTTrainer used on its own)."""
    return _current_run.get()


def stamped(record: dict) -> dict:
    """`record` with this run's id as `run_id` (what `hf-aft audit` reads back), when there is one."""
    run_id = current_run_id()
    return {**record, "run_id": run_id} if run_id else record


@dataclass
class Claim:
    """An output claimed by this process: `path` (a folder, or a file when `is_file`), its claim file `marker`, the
    `run_id` written into it, and whether the folder was `created` by this command."""

    path: Path
    marker: Path
    run_id: str
    command: str
    is_file: bool = False
    created: bool = False
    complete: bool = False  # set by the command once its output is whole (a later failure, e.g. a push, keeps it)
    since: float = field(default_factory=time.time)


def marker_path(path: Path, is_file: bool = False) -> Path:
    return path.with_name(f".{path.name}{CLAIM_NAME}") if is_file else path / CLAIM_NAME


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _alive(record: dict) -> bool | None:
    """Whether the process of a claim runs: True/False on this host, None for a claim made on another machine."""
    if record.get("host") != socket.gethostname():
        return None
    started = _process_started(int(record.get("pid", -1)))
    return started is not None and abs(started - float(record.get("process_started", -1))) < 1.0


def _describe(record: dict) -> str:
    return (f"hf-aft {record.get('command', '?')} (pid {record.get('pid', '?')} on {record.get('host', '?')}, "
            f"started {record.get('started', '?')})")


def _make_folder(path: Path, flag: str) -> bool:
    """Create `path` (and its parents); returns whether this call made it (of two commands started together, one
    did). OSError becomes one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
        return True
    except FileExistsError:
        if path.is_dir():
            return False
        raise AFTError(f"{flag} {str(path)!r} is a file, not a folder: choose a folder.") from None
    except OSError as error:
        raise AFTError(f"{flag} {str(path)!r} cannot be created: {error.strerror or error}: choose a folder on a "
                       "writable filesystem.") from error


def _write_exclusive(marker: Path, record: dict, flag: str) -> bool:
    """Create the claim file with O_EXCL; False when it exists already."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        raise AFTError(f"{flag} {str(marker.parent)!r} cannot be written: {error.strerror or error}: choose a folder "
                       "on a writable filesystem with free space.") from error
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
    except OSError as error:  # a full disk: no half-written claim left behind
        marker.unlink(missing_ok=True)
        raise disk_error(error, marker.parent, way_out=f"free space there, or choose another {flag}") from error
    return True


def _read(marker: Path) -> dict:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}  # being written this instant, or damaged: treated as held


def _read_settled(marker: Path, tries: int = 20, pause: float = 0.05) -> dict | None:
    """The claim in `marker`, waiting up to tries x pause seconds while it reads empty: another command creates it
    (O_EXCL) and writes it in two steps, so a reader racing it sees an empty file for an instant. None when it is
    gone (released); {} when it stays unreadable (damaged, or its writer was killed between the two steps)."""
    for attempt in range(tries):
        if not marker.exists():
            return None
        record = _read(marker)
        if record or attempt == tries - 1:
            return record
        time.sleep(pause)
    return {}


def claim(path: str | os.PathLike, command: str, is_file: bool = False, flag: str = "--output_dir") -> Claim:
    """Claim `path` for `command` (see the module docstring).

    Raises:
        AFTError: the path is claimed by a running command (or one on another host), or cannot be created.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    folder = path.parent if is_file else path
    created = _make_folder(folder, flag)
    try:
        return _claim(path, command, is_file, flag, created)
    except AFTError:
        if created:  # refused: the folder this command made goes again, if it holds nothing: a command that raced
            with contextlib.suppress(OSError):  # it to the claim may already be writing there
                folder.rmdir()
        raise


def _claim(path: Path, command: str, is_file: bool, flag: str, created: bool) -> Claim:
    record = {"run_id": uuid.uuid4().hex, "command": command, "pid": os.getpid(), "host": socket.gethostname(),
              "process_started": _process_started(os.getpid()),
              "started": datetime.now().astimezone().isoformat(timespec="seconds"),
              "found": {} if is_file else file_signatures(path, CLAIM_NAME)}  # for files_written
    marker = marker_path(path, is_file)
    for _ in range(3):  # a stale claim taken over by another process in between: look again
        if _write_exclusive(marker, record, flag):
            return Claim(path, marker, record["run_id"], command, is_file, created)
        other = _read_settled(marker)
        if other is None:  # released while we looked: claim it again
            continue
        if not other:
            raise AFTError(f"{flag} {str(path)!r} holds an unreadable claim {marker} (a command claiming it this "
                           f"instant, or one killed while it did): retry in a moment, or delete {marker}.")
        alive = _alive(other)
        if alive is not False:
            where = "" if alive else " on another machine"
            raise AFTError(f"{flag} {str(path)!r} is in use by {_describe(other)}{where}: wait for it to end, or "
                           f"choose another {flag}" + ("" if alive else f" (if that run is gone, delete {marker})")
                           + ".")
        logger.warning("hf-aft: %s claimed %s and is no longer running: its claim is stale, taking it over.",
                       _describe(other), path)
        _drop_stale(marker)
    raise AFTError(f"{flag} {str(path)!r}: could not claim it (others keep claiming it): choose another {flag}.")


def _drop_stale(marker: Path) -> None:
    """Rename, then delete: of several processes taking over one stale claim, one renames it, the others retry."""
    aside = marker.with_name(f"{marker.name}.stale.{os.getpid()}")
    try:
        os.rename(marker, aside)
        aside.unlink()
    except FileNotFoundError:
        pass


def files_written(folder: str | os.PathLike) -> list[str]:
    """The files directly in `folder` that the command claiming it wrote or changed: those it found when it claimed
    the folder, unchanged since, are not its (a user's notes, a data file), so a finished run's marker never lists them
    and a later --overwrite_output_dir run never removes them. All files when the folder holds no claim."""
    found = _read(marker_path(Path(folder))).get("found") or {}
    return sorted(n for n, signature in file_signatures(folder, CLAIM_NAME).items() if found.get(n) != signature)


def still_ours(claim_: Claim) -> bool:
    return _read(claim_.marker).get("run_id") == claim_.run_id


def release(claim_: Claim, failed: bool) -> None:
    """Remove the claim file (when it is still ours). After a failure, a folder this command created goes too, unless
    its output is complete or it holds checkpoints to resume from; what was kept is added to `kept`."""
    if still_ours(claim_):
        claim_.marker.unlink(missing_ok=True)
    if failed and claim_.is_file and claim_.created and not claim_.path.exists():
        with contextlib.suppress(OSError):  # the folder made for the file, if nothing else came into it
            claim_.path.parent.rmdir()
    if not failed or claim_.is_file or not claim_.path.is_dir():
        return
    if claim_.complete:
        kept.append(f"the finished output in {claim_.path}")
        return
    checkpoints = whole_checkpoints(claim_.path, claim_.since)
    if checkpoints:  # a resumed run's folder too: it names the newest checkpoint, not the one it resumed from
        finished = " beside the earlier finished run, unchanged" if put_back(claim_.path) else ""
        kept.append(f"checkpoints in {claim_.path}{finished} (resume with --resume_from_checkpoint {checkpoints[-1]})")
    elif claim_.created:
        shutil.rmtree(claim_.path, ignore_errors=True)
        removed.append(str(claim_.path))
    elif put_back(claim_.path) is False:  # a finished run's files this one began to replace
        kept.append(f"{claim_.path} with the earlier run's files partly replaced (no finished run any more: run the "
                    "command again)")
    else:
        kept.append(f"{claim_.path} as it was before this command")


def _whole_state(path: Path, since: float) -> bool:
    """A trainer_state.json that exists, and parses unless written since `since` (a signal can land while this run's
    Trainer writes it, leaving it empty or cut; a damaged one from before is not this run's to remove)."""
    try:
        return path.stat().st_mtime < since or isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def whole_checkpoints(folder: Path, since: float = 0.0) -> list[Path]:
    """The checkpoints of `folder` in step order, after removing any the run was writing when it stopped (Trainer
    writes `trainer_state.json` last: a checkpoint without it, or with one written since `since` that does not parse,
    is half written and cannot be resumed from)."""
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for partial in [p for p in found if not _whole_state(p / "trainer_state.json", since)]:
        shutil.rmtree(partial, ignore_errors=True)
        found.remove(partial)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


@contextmanager
def claimed(path: str | os.PathLike | None, command: str, is_file: bool = False, flag: str = "--output_dir"):
    """`claim` for the block, `release` after it (a failure or a signal releases it too); the block runs with the
    claim's run id as `current_run_id()`. A None path claims nothing."""
    if path is None:
        yield None
        return
    claim_ = claim(path, command, is_file, flag)
    token = _current_run.set(claim_.run_id)
    failed = True
    try:
        yield claim_
        failed = False
    except Exception as error:
        if isinstance(error, DiskError) or disk_errno(error) is None:
            raise
        raise disk_error(error, claim_.path.parent if is_file else claim_.path,
                         way_out=f"free space there, or choose another {flag}") from error
    finally:
        _current_run.reset(token)
        release(claim_, failed)


def check_unchanged(claim_: Claim | None) -> None:
    """Before a run marks its output finished: the claim is still its own and every file that records a run id
    records this run's.

    Raises:
        AFTError: another command took the folder over, or wrote files into it.
    """
    if claim_ is None:
        return
    written = {name for name in os.listdir(claim_.path)  # a file left by an older run before this one began is not
               if (claim_.path / name).stat().st_mtime >= claim_.since}  # "changed under" it (--overwrite_output_dir)
    foreign = sorted(name for name, run_id in carried_run_ids(claim_.path).items()
                     if run_id != claim_.run_id and name in written)
    if still_ours(claim_) and not foreign:
        return
    what = f"{', '.join(foreign[:5])} belong to another run" if foreign else f"its claim {claim_.marker} was replaced"
    raise AFTError(f"{claim_.path} changed under this run ({what}): its files are not one run's; train again into a "
                   "new --output_dir.")


def tag_config(model) -> None:
    """Record this run's id in the model's config, so that its config.json names the run that saved it."""
    config = getattr(model, "config", None)
    if current_run_id() and config is not None and not isinstance(config, dict):
        setattr(config, RUN_ID_KEY, current_run_id())


def carried_run_id(path: Path) -> str | None:
    """The run id a file records: `run_id` / `hf_aft_run_id` at the top of a JSON file, `hf_aft_run_id` in a
    safetensors file's metadata; None for a file that records none."""
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            return (data.get("run_id") or data.get(RUN_ID_KEY)) if isinstance(data, dict) else None
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return (f.metadata() or {}).get(RUN_ID_KEY)
    except Exception:  # an unreadable or damaged file: audit's "changed", not a run id
        return None
    return None


def carried_run_ids(folder: str | os.PathLike) -> dict[str, str | None]:
    """Relative name -> run id of the files at the top of `folder` that record one."""
    found = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.name != CLAIM_NAME:
            run_id = carried_run_id(path)
            if run_id:
                found[path.name] = run_id
    return found


__all__ = ["CLAIM_NAME", "Claim", "RUN_ID_KEY", "carried_run_ids", "check_unchanged", "claim", "claimed",
           "current_run_id", "release", "stamped"]
