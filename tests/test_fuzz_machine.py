"""Fuzz suite, part two (issue 23): the machine misbehaves, not the data. Each case runs `hf-aft` as a user would
(most in a fresh `python -m hf_aft` process) against a fault around the run: a second command into the same output,
a read-only or full filesystem under the feature cache or the output, a signal at several points. For each: exit
status 2 (130/143 for a signal) and one last line, no traceback, nothing that existed before changed, and no folder
left that looks like a finished run.

Real filesystems where the suite can make them: a tmpfs of a few hundred KB (full disk) and a read-only bind mount,
when running as root on Linux; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_fuzz_cli import ERROR, Models, _hashes, _looks_finished, rows, train_args, write_split_files

from hf_aft import AFTError
from hf_aft.audit import read_record, verify
from hf_aft.claims import CLAIM_NAME, Claim, check_unchanged, claim, claimed, release

CAN_MOUNT = sys.platform == "linux" and hasattr(os, "geteuid") and os.geteuid() == 0
needs_mount = pytest.mark.skipif(not CAN_MOUNT, reason="tmpfs and read-only bind mounts need root on Linux")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("machine-models"))


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_AFT_DEBUG", raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def data(folder: Path, n: int = 16, saved: bool = False) -> Path:
    """Data files (csv: converted into the datasets cache when loaded), or a save_to_disk folder (read in place)."""
    if not saved:
        return write_split_files(folder / "data", {"train": rows(n), "test": rows(8, seed=1)}, ".csv")
    import datasets

    splits = {"train": rows(n), "test": rows(8, seed=1)}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(folder / "saved")
    return folder / "saved"


def hf_aft(*argv, env: dict | None = None, wait: bool = True, timeout: int = 300):
    command = [sys.executable, "-m", "hf_aft", *map(str, argv)]
    if not wait:  # Ctrl-C as at a terminal, even when the suite itself runs in the background (`cmd &` ignores it)
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_refused(result, *fragments: str, code: int = 2) -> str:
    """Exit `code`, one `hf-aft: ...` line last on stderr, no traceback; returns that line."""
    stderr = result.stderr if hasattr(result, "stderr") else result[1]
    returncode = result.returncode if hasattr(result, "returncode") else result[0]
    assert "Traceback" not in stderr, stderr
    assert returncode == code, f"exit {returncode}:\n{stderr}"
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("hf-aft:"), stderr
    assert sum(line.startswith(ERROR) for line in stderr.splitlines()) <= 1, stderr
    for fragment in fragments:
        assert fragment in last, last
    return last


def features_args(models: Models, source: Path, out: Path) -> list:
    return ["features", "--teachers", models.teacher, "--dataset_name", source, "--output_dir", out]


# ---------------------------------------------------------------- kind 14: two commands, one output
def _live_claim(folder: Path, is_file: bool = False) -> subprocess.Popen:
    """A claim held by a live process (a `sleep`), written as hf-aft writes one."""
    import psutil

    sleeper = subprocess.Popen(["sleep", "60"])
    record = {"run_id": "other", "command": "train", "pid": sleeper.pid, "host": os.uname().nodename,
              "process_started": psutil.Process(sleeper.pid).create_time(), "started": "2026-01-01T00:00:00"}
    marker = folder.with_name(f".{folder.name}{CLAIM_NAME}") if is_file else folder / CLAIM_NAME
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record))
    return sleeper


@pytest.mark.parametrize("command", ["train", "features", "export", "rank-teachers"])
def test_a_claimed_output_is_refused_and_left_as_it_is(command, work, models, capsys):
    from hf_aft.commands import main

    out = work / ("ranking.json" if command == "rank-teachers" else "out")
    sleeper = _live_claim(out, is_file=command == "rank-teachers")
    (work.parent / "run").mkdir(exist_ok=True)
    argv = {"train": train_args(models, data(work), out),
            "features": features_args(models, data(work), out),
            "export": ["export", work.parent / "run", "--output_dir", out],  # a run beside it
            "rank-teachers": ["rank-teachers", "--teachers", models.teacher, "--dataset_name", data(work),
                              "--output_file", out]}[command]
    before = _hashes(work)
    try:
        code = main([str(a) for a in argv])
    finally:
        sleeper.kill()
    last = assert_refused((code, capsys.readouterr().err), "is in use by hf-aft train", f"pid {sleeper.pid}")
    assert "wait for it to end" in last
    assert _hashes(work) == before


def test_two_trainings_started_together_one_wins_and_the_folder_is_one_runs(work, models):
    out = work / "out"
    argv = train_args(models, data(work), out, "--max_steps", "3")
    first, second = hf_aft(*argv, wait=False), hf_aft(*argv, wait=False)
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[0] == 2)
    assert_refused(refused)
    assert any(text in refused[1] for text in ("is in use by hf-aft train", "already holds files")), refused[1]
    record = read_record(str(out))
    assert verify(str(out), record) == []
    assert json.loads((out / "config.json").read_text())["hf_aft_run_id"] == record["run_id"]
    assert not (out / CLAIM_NAME).exists()


def test_the_command_refused_a_folder_both_made_leaves_the_winner_s_files(tmp_path, monkeypatch):
    """Two commands started together both saw no folder and both took themselves for its maker; the one refused the
    claim removed "its" folder, the winner's claim and files with it, and both exited 2 (seen once under load)."""
    from hf_aft import claims

    out = tmp_path / "out"
    winner = claim(out, "train")
    (out / "model.safetensors").write_text("the winner's weights")
    monkeypatch.setattr(claims, "_make_folder", lambda path, flag: True)  # the loser, as it saw the race
    with pytest.raises(AFTError, match="is in use by hf-aft train"):
        claim(out, "train")
    assert (out / "model.safetensors").read_text() == "the winner's weights"
    check_unchanged(winner)  # still the winner's: it finishes
    release(winner, failed=False)


def test_two_feature_commands_started_together(work, models):
    out, source = work / "features", data(work, n=64)
    first, second = hf_aft(*features_args(models, source, out), wait=False), hf_aft(
        *features_args(models, source, out), wait=False)
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    assert sorted(code for code, _ in results) == [0, 2], results
    assert_refused(next(r for r in results if r[0] == 2))
    assert (out / "dataset_dict.json").exists() and not (out / CLAIM_NAME).exists()


def test_a_stale_claim_is_named_and_taken_over(work, models):
    out = work / "out"
    out.mkdir()
    (out / CLAIM_NAME).write_text(json.dumps({"run_id": "dead", "command": "train", "pid": 2**22 + 12345,
                                              "host": os.uname().nodename, "process_started": 1.0}))
    result = hf_aft(*train_args(models, data(work), out))
    assert result.returncode == 0, result.stderr
    assert "is no longer running: its claim is stale, taking it over" in result.stderr
    assert verify(str(out), read_record(str(out))) == []


def test_a_claim_from_another_machine_is_refused_naming_its_file(work, models):
    out = work / "out"
    out.mkdir()
    (out / CLAIM_NAME).write_text(json.dumps({"run_id": "x", "command": "train", "pid": 1, "host": "elsewhere",
                                              "process_started": 1.0}))
    last = assert_refused(hf_aft(*train_args(models, data(work), out)), "on another machine",
                          f"delete {out / CLAIM_NAME}")
    assert "elsewhere" in last


def test_audit_names_a_file_written_by_another_run(work, models):
    out = work / "out"
    assert hf_aft(*train_args(models, data(work), out)).returncode == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    summary["run_id"] = "another-run"
    (out / "transfer_summary.json").write_text(json.dumps(summary))
    # reseal as a mixed-up folder would be: the hashes match, only the run ids tell
    from hf_aft.audit import seal

    seal(str(out))
    result = hf_aft("audit", out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "foreign  transfer_summary.json (written by run another-run" in result.stdout + result.stderr


def test_a_run_whose_folder_changed_under_it_fails(tmp_path):
    with claimed(tmp_path / "out", "train") as held:
        (held.path / "transfer_summary.json").write_text(json.dumps({"run_id": "intruder"}))
        with pytest.raises(ValueError, match="changed under this run .*transfer_summary.json"):
            check_unchanged(held)
        (held.path / "transfer_summary.json").write_text(json.dumps({"run_id": held.run_id}))
        check_unchanged(held)
        held.marker.write_text(json.dumps({"run_id": "thief"}))
        with pytest.raises(ValueError, match="claim .* was replaced"):
            check_unchanged(held)


def test_a_failed_command_removes_the_folder_it_created_unless_it_holds_checkpoints(tmp_path):
    held = claim(tmp_path / "a", "train")
    release(held, failed=True)
    assert not (tmp_path / "a").exists()
    held = claim(tmp_path / "b", "train")
    (held.path / "checkpoint-2").mkdir()
    (held.path / "checkpoint-2" / "trainer_state.json").write_text("{}")  # a whole checkpoint
    release(held, failed=True)
    assert (tmp_path / "b" / "checkpoint-2").is_dir() and not (tmp_path / "b" / CLAIM_NAME).exists()
    assert isinstance(claim(tmp_path / "b", "train"), Claim)  # released: claimable again


# ---------------------------------------------------------------- kind 15: read-only and full filesystems
@contextlib.contextmanager
def mounted(folder: Path, *options: str, source: Path | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    command = (["mount", "--bind", str(source), str(folder)] if source else
               ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(folder)])
    subprocess.run(command, check=True)
    try:
        if source and "ro" in options:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the filesystem of `folder`, leaving about `leave` bytes."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(free - leave, 0))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith((".staging", ".partial", "tmp")) or
                  p.name.endswith((".lock", ".tmp")))


@needs_mount
@pytest.mark.parametrize("saved", [True, False], ids=["saved-folder", "csv"])
def test_a_read_only_cache_that_holds_the_features_is_read_without_writing(saved, work, models, tmp_path):
    source, filled = data(work, saved=saved), tmp_path / "filled"
    env = {"HF_DATASETS_CACHE": str(filled)}
    assert hf_aft(*train_args(models, source, work / "first"), env=env).returncode == 0
    for lock in filled.rglob("*.lock"):
        lock.unlink()
    before = _hashes(filled)
    with mounted(tmp_path / "ro", "ro", source=filled) as cache:
        for argv in (train_args(models, source, work / "second"), features_args(models, source, work / "feats")):
            result = hf_aft(*argv, env={"HF_DATASETS_CACHE": str(cache)})
            assert result.returncode == 0, result.stderr
    assert _hashes(filled) == before


@needs_mount
@pytest.mark.parametrize("command", ["train", "features", "rank-teachers"])
def test_a_read_only_cache_without_the_features_is_one_line(command, work, models, tmp_path):
    source = data(work, saved=command != "train")
    (tmp_path / "empty" / "hf_aft_features").mkdir(parents=True)
    argv = {"train": train_args(models, source, work / "out"), "features": features_args(models, source, work / "f"),
            "rank-teachers": ["rank-teachers", "--teachers", models.teacher, "--dataset_name", source,
                              "--output_dir", work]}[command]
    with mounted(tmp_path / "ro", "ro", source=tmp_path / "empty") as cache:
        last = assert_refused(hf_aft(*argv, env={"HF_DATASETS_CACHE": str(cache)}), "read-only",
                              "HF_DATASETS_CACHE")
    assert str(cache) in last
    assert not _looks_finished(work / "out") and not (work / "f").exists()


@needs_mount
@pytest.mark.parametrize("leave,saved", [(0, True), (6_000, True), (0, False)])
def test_a_full_cache_is_one_line_and_leaves_nothing_behind(leave, saved, work, models, tmp_path):
    source = data(work, n=200, saved=saved)
    with mounted(tmp_path / "small", "size=400k") as cache:
        fill(cache, leave)
        before = _hashes(cache)
        result = hf_aft(*train_args(models, source, work / "out"), env={"HF_DATASETS_CACHE": str(cache)})
        last = assert_refused(result, "no space left on the device", "HF_DATASETS_CACHE")
        assert "MB free" in last
        assert leftovers(cache) == [] and not list(cache.rglob("*.arrow")), sorted(cache.rglob("*"))
        assert all(_hashes(cache)[name] == digest for name, digest in before.items())
    assert not (work / "out").exists()


@needs_mount
@pytest.mark.parametrize("command", ["train", "features", "export"])
def test_a_full_output_disk_is_one_line(command, work, models, tmp_path):
    source = data(work)
    run = work / "run"
    if command == "export":
        assert hf_aft(*train_args(models, source, run)).returncode == 0
    with mounted(tmp_path / "small", "size=200k") as disk:
        fill(disk, leave=12_000)
        before = _hashes(disk)
        argv = {"train": train_args(models, source, disk / "out"),
                "features": features_args(models, source, disk / "out"),
                "export": ["export", run, "--output_dir", disk / "out"]}[command]
        last = assert_refused(hf_aft(*argv), "no space left on the device")
        assert str(disk) in last
        assert not (disk / "out").exists()
        assert all(_hashes(disk).get(name) == digest for name, digest in before.items())


@needs_mount
@pytest.mark.parametrize("command", ["train", "features", "rank-teachers"])
def test_a_read_only_output_is_one_line(command, work, models, tmp_path):
    source = data(work)
    (tmp_path / "frozen").mkdir()
    with mounted(tmp_path / "ro", "ro", source=tmp_path / "frozen") as disk:
        argv = {"train": train_args(models, source, disk / "out"),
                "features": features_args(models, source, disk / "out"),
                "rank-teachers": ["rank-teachers", "--teachers", models.teacher, "--dataset_name", source,
                                  "--output_file", disk / "ranking.json"]}[command]
        assert_refused(hf_aft(*argv), str(disk))


# ---------------------------------------------------------------- kind 16: signals
def _wait_for(condition, process, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the point to interrupt at never came"
        time.sleep(0.05)


@pytest.mark.parametrize("checkpoints", [False, True])
def test_a_signal_during_an_overwriting_run_leaves_the_earlier_finished_run_finished(checkpoints, work, models):
    """--overwrite_output_dir into a finished run, interrupted while training, before it changed any file: the line
    said the folder was kept as it was, yet its hf_aft_complete.json was gone (`hf-aft push` refused the run); with
    checkpoints of its own saved, the same."""
    from hf_aft.finished_marker import COMPLETE_NAME, SET_ASIDE_NAME

    out = work / "out"
    assert hf_aft(*train_args(models, data(work), out, teachers=True)).returncode == 0
    before = (out / COMPLETE_NAME).read_text()
    saving = ["--save_strategy", "steps", "--save_steps", "2"] if checkpoints else []
    process = hf_aft(*train_args(models, data(work), out, "--max_steps", "100000", "--overwrite_output_dir", *saving,
                                 teachers=True, max_steps=False), wait=False)
    _wait_for(lambda: any(out.glob("checkpoint-*/trainer_state.json")) if checkpoints else
              (out / SET_ASIDE_NAME).exists(), process)  # training has begun
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    said = "beside the earlier finished run, unchanged" if checkpoints else f"{out} as it was before this command"
    assert_refused((process.returncode, stderr), said, code=130)
    assert (out / COMPLETE_NAME).read_text() == before and not (out / SET_ASIDE_NAME).exists()
    assert hf_aft("audit", out).returncode == (1 if checkpoints else 0)  # the checkpoints are files added since


def test_a_set_aside_marker_goes_back_only_while_the_finished_files_are_unchanged(tmp_path):
    from hf_aft.finished_marker import COMPLETE_NAME, put_back, set_aside
    from hf_aft.outputs import mark_complete

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    mark_complete(str(tmp_path))
    set_aside(str(tmp_path))
    assert not (tmp_path / COMPLETE_NAME).exists() and put_back(tmp_path) is True
    assert (tmp_path / COMPLETE_NAME).exists()
    set_aside(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"other weights")  # the new run saved its student
    assert put_back(tmp_path) is False and not (tmp_path / COMPLETE_NAME).exists()
    assert put_back(tmp_path) is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_training_keeps_the_checkpoints_and_says_how_to_resume(signum, work, models):
    out = work / "out"
    process = hf_aft(*train_args(models, data(work), out, "--max_steps", "100000", "--save_strategy", "steps",
                                 "--save_steps", "2", teachers=True, max_steps=False), wait=False)
    _wait_for(lambda: any(out.glob("checkpoint-*/trainer_state.json")), process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    last = assert_refused((process.returncode, stderr), f"interrupted by {signal.Signals(signum).name}",
                          "--resume_from_checkpoint", "Add that --resume_from_checkpoint to the same command",
                          code=128 + signum)
    assert stderr.rstrip().splitlines()[-1] == last, "a progress bar was drawn after the last line"
    assert not _looks_finished(out) and not (out / CLAIM_NAME).exists()
    named = Path(re.search(r"--resume_from_checkpoint (\S+?)\)", last).group(1))
    assert all((c / "trainer_state.json").exists() for c in out.glob("checkpoint-*")), "a half-written checkpoint"
    step = int(named.name.split("-")[-1])
    resumed = hf_aft(*train_args(models, data(work), out, "--max_steps", str(step + 1), "--resume_from_checkpoint",
                                 named, max_steps=False))
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_teacher_extraction_leaves_no_partial_cache_and_no_folder(signum, work, models, tmp_path):
    out, cache = work / "out", tmp_path / "cache" / "hf_aft_features"
    process = hf_aft(*train_args(models, data(work, n=3000), out, "--teacher_batch_size", "1"), wait=False)
    _wait_for(lambda: any(cache.glob(".partial-*/*")), process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert_refused((process.returncode, stderr), f"interrupted by {signal.Signals(signum).name}", "kept",
                   code=128 + signum)
    assert leftovers(cache) == [p.name for p in cache.glob("*.lock")] and not list(cache.glob("teacher-*.arrow"))
    assert not out.exists()


INTERRUPT_MID_IMPORT = """
import importlib.abc, sys
from hf_aft.commands import main

class Interrupt(importlib.abc.MetaPathFinder):  # Ctrl-C while `datasets` is half imported
    def find_spec(self, name, path=None, target=None):
        if name.startswith("datasets.packaged_modules"):
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
sys.exit(main(sys.argv[1:]))
"""


def test_a_signal_in_the_middle_of_an_import_is_one_line(work, models):
    result = subprocess.run([sys.executable, "-c", INTERRUPT_MID_IMPORT, *map(str, train_args(models, data(work),
                            work / "out"))], capture_output=True, text=True, timeout=300)
    assert_refused(result, "interrupted by SIGINT", "kept no output", code=130)
    assert not (work / "out").exists()


def test_a_half_written_checkpoint_is_removed_and_the_last_whole_one_named(tmp_path):
    held = claim(tmp_path / "out", "train")
    for step, whole in ((2, True), (4, True), (6, False), (8, None)):
        (held.path / f"checkpoint-{step}").mkdir()
        if whole is not False:  # None: a signal cut trainer_state.json while it was written
            (held.path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}" if whole else "")
    from hf_aft import faults

    faults.kept.clear()
    release(held, failed=True)
    assert sorted(p.name for p in held.path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    line = faults.interrupted_line(KeyboardInterrupt())
    faults.kept.clear()
    assert f"--resume_from_checkpoint {held.path / 'checkpoint-4'})" in line
    assert line.endswith("Add that --resume_from_checkpoint to the same command to go on.")


def test_an_overwrite_interrupted_after_removing_the_earlier_checkpoints_does_not_call_that_run_kept(tmp_path):
    """The earlier finished run's checkpoints go when the overwriting run starts training; interrupted then, its marker
    was put back and the line said "kept ... as it was before this command", while its audit failed on them."""
    from hf_aft import faults
    from hf_aft.finished_marker import COMPLETE_NAME
    from hf_aft.outputs import clear_complete, clear_earlier_checkpoints

    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (out / "config.json").write_text("{}")
    (out / COMPLETE_NAME).write_text(json.dumps({"complete": True, "files": ["config.json"]}))
    held = claim(out, "train")
    clear_complete(str(out))  # the overwriting run starts training
    clear_earlier_checkpoints(str(out))
    faults.kept.clear()
    release(held, failed=True)  # interrupted before it saved anything
    line = faults.interrupted_line(KeyboardInterrupt())
    faults.kept.clear()
    assert not (out / COMPLETE_NAME).exists() and "as it was before this command" not in line
    assert "partly replaced (no finished run any more" in line


def test_a_launched_runs_other_process_does_not_claim_nothing_was_kept(monkeypatch):
    """Only the main process holds the output dir: another process of `accelerate launch` said "kept no output of this
    command" beside the main one's checkpoints."""
    from hf_aft import faults

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = faults.interrupted_line(KeyboardInterrupt())
    assert line == "hf-aft: interrupted by SIGINT (process 1 of 2: the main process says what was kept)."


def test_a_signal_before_any_output_says_nothing_was_kept(work, models):
    source = data(work, n=3000)
    process = hf_aft("rank-teachers", "--teachers", models.teacher, "--dataset_name", source, "--output_dir", work,
                     "--teacher_batch_size", "1", wait=False)
    cache = Path(os.environ["HF_DATASETS_CACHE"]) / "hf_aft_features"
    _wait_for(lambda: any(cache.glob(".partial-*/*")), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert_refused((process.returncode, stderr), "interrupted by SIGINT", code=130)
    assert not (work / "teacher_ranking.json").exists()


def test_a_claim_being_written_is_read_once_written_and_a_damaged_one_is_refused(tmp_path):
    import socket
    import threading

    import psutil

    from hf_aft.claims import marker_path

    out = tmp_path / "out"
    out.mkdir()
    marker = marker_path(out, False)
    marker.write_text("")  # another command created its claim (O_EXCL) and has not written it yet
    record = {"run_id": "x", "command": "hf-aft train", "pid": os.getpid(), "host": socket.gethostname(),
              "process_started": psutil.Process(os.getpid()).create_time()}
    threading.Timer(0.2, lambda: marker.write_text(json.dumps(record))).start()
    with pytest.raises(AFTError, match="is in use by"):  # the writer, alive, holds it: not "unreadable"
        claim(out, "hf-aft train")
    marker.write_text("{")  # damaged for good
    with pytest.raises(AFTError, match="holds an unreadable claim"):
        claim(out, "hf-aft train")
