"""The marker of a finished run, `hf_aft_complete.json` (`outputs.mark_complete` writes it last, listing the files
the run left; `hf-aft push` publishes only a folder that has it). A new run in that folder (--overwrite_output_dir, a
resume) sets it aside when its training starts, with each listed file's size and modification time; when that run
fails or is interrupted before it changed any of them, `claims.release` puts it back, so the earlier run stays a
finished, publishable one, as the interrupt line says."""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import datetime
from pathlib import Path

COMPLETE_NAME = "hf_aft_complete.json"
SET_ASIDE_NAME = ".hf_aft_complete.set_aside.json"  # hidden: never pushed, gone when the run ends either way
UPDATE_REPORT_NAME = "update_report.json"  # written into a finished run after its marker (check-updates --retrain)
WRITTEN_ONLY = "files_written_only"  # a marker whose files are those its run wrote (not a user's files found there)


def _signature(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def file_signatures(folder: str | Path, skip: str) -> dict[str, list[int]]:
    """Size and modification time (ns) of each file directly in `folder`, but `skip`."""
    with contextlib.suppress(OSError):
        return {entry.name: signature for entry in os.scandir(folder) if entry.is_file() and entry.name != skip
                and (signature := _signature(Path(entry.path))) is not None}
    return {}


def set_aside(folder: str) -> None:
    """Move the folder's finished-run marker aside (nothing when it has none; a damaged one is dropped)."""
    marker = Path(folder, COMPLETE_NAME)
    if not marker.is_file():
        return
    text = marker.read_text()
    try:
        record = json.loads(text)
        files = record.get("files", []) if record.get(WRITTEN_ONLY) else _written_since_start(folder, record["files"])
    except (ValueError, AttributeError, KeyError, TypeError):
        files = None
    if isinstance(files, list):
        stats = {str(name): _signature(Path(folder, str(name))) for name in files}
        Path(folder, SET_ASIDE_NAME).write_text(json.dumps({"marker": text, "stats": stats}))
    marker.unlink()


def _written_since_start(folder: str, files: list) -> list[str]:
    """Of the files an earlier hf-aft's marker lists (every file the folder held, a user's notes too), those changed
    since its run started (audit.json's `started`): only those are the run's. None of them without that time."""
    try:
        started = datetime.fromisoformat(json.loads(Path(folder, "audit.json").read_text())["started"]).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [str(name) for name in files if (stat := _signature(Path(folder, str(name)))) and stat[1] >= started * 1e9]


def put_back(folder: str | Path) -> bool | None:
    """After a failed run: the marker it set aside goes back when every file it lists is as it was (True); False
    when this run changed some (the folder is no finished run any more); None when nothing was set aside."""
    aside = Path(folder, SET_ASIDE_NAME)
    if not aside.is_file():
        return None
    try:
        record = json.loads(aside.read_text())
        unchanged = not record.get("changed") and all(_signature(Path(folder, name)) == stat
                                                      for name, stat in record["stats"].items())
    except (ValueError, KeyError, TypeError, AttributeError):
        unchanged = False
    if unchanged:
        Path(folder, COMPLETE_NAME).write_text(record["marker"])
    aside.unlink(missing_ok=True)
    return unchanged


def mark_changed(folder: str | Path) -> None:
    """The earlier run's folder lost something its marker does not list (its checkpoints): it is no finished run to
    put back any more, whatever its listed files."""
    aside = Path(folder, SET_ASIDE_NAME)
    try:
        record = json.loads(aside.read_text())
    except (OSError, ValueError):
        return
    aside.write_text(json.dumps({**record, "changed": True}))


def drop_earlier_files(folder: str | Path) -> list[str]:
    """Once a new run in a finished run's folder has trained (before it saves anything): remove the files the earlier
    run left there that this run has not written again (as they were when set aside), so that none it does not write
    (a transfer state after `--transfer none`, its metrics files, which `Trainer.save_metrics` merges into, an update
    report) is taken for this run's. Returns their names."""
    try:
        stats = json.loads(Path(folder, SET_ASIDE_NAME).read_text())["stats"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    stats.setdefault(UPDATE_REPORT_NAME, _signature(Path(folder, UPDATE_REPORT_NAME)))
    removed = []
    for name, stat in stats.items():
        path = Path(folder, name)
        if stat is not None and path.is_file() and _signature(path) == stat:
            path.unlink()
            removed.append(name)
    return removed


def marker_record(folder: str | Path, files: list[str]) -> dict:
    """The record of a finished run's marker listing `files` (those it wrote), once any marker set aside is gone."""
    drop_set_aside(folder)
    return {"complete": True, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files, WRITTEN_ONLY: True}


def drop_set_aside(folder: str | Path) -> None:
    """A run that finished leaves no marker aside (`outputs.mark_complete` writes its own)."""
    Path(folder, SET_ASIDE_NAME).unlink(missing_ok=True)
