"""Test setup: no Hub, a private datasets cache, tiny random models (tests/tiny.py)."""

import atexit
import os
import shutil
import tempfile

import hub_server

# Before datasets / huggingface_hub are imported: they read these once. The Hub is offline except in the tests of
# test_hub.py, which serve the Hub emulation (tests/hub_server.py) at HF_ENDPOINT and switch offline mode off.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf_aft_test_cache_")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_aft_test_home_")
for _folder in (os.environ["HF_DATASETS_CACHE"], os.environ["HF_HOME"]):  # gone when the test session ends
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{hub_server.free_port()}"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import tiny  # noqa: E402


@pytest.fixture(scope="session")
def teacher_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return [tiny.save_teacher(root / "teacher-a", hidden=12, seed=0), tiny.save_teacher(root / "teacher-b", hidden=8,
                                                                                        seed=1)]


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory):
    return tiny.save_student(tmp_path_factory.mktemp("student") / "student")


def pytest_terminal_summary(terminalreporter):
    """How many cases of the CLI fuzz suites (tests/test_fuzz_cli.py: bad inputs; tests/test_fuzz_machine.py: faults
    of the machine) ran, and how they ended."""
    for prefix, what in (("test_fuzz_cli.py::test_bad_input[", "CLI fuzz suite: tried {} bad inputs"),
                         ("test_fuzz_machine.py::", "machine-fault suite: tried {} faults")):
        counts = {}
        for outcome in ("passed", "failed", "xfailed", "xpassed", "skipped", "error"):
            reports = [r for r in terminalreporter.stats.get(outcome, []) if prefix in getattr(r, "nodeid", "")
                       and getattr(r, "when", "call") in ("call", "setup")]
            if reports:
                counts[outcome] = len({r.nodeid for r in reports})
        if counts:
            details = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
            terminalreporter.write_line(f"hf-aft {what.format(sum(counts.values()))} ({details})")
