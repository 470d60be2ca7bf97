"""The documentation is tested: the site builds with `mkdocs build --strict` (links, anchors, docstrings, the
generated CLI reference), README links point at pages that exist, and every shell and Python example of README.md
and docs/**/*.md either runs here or says why not.

An example is a fenced block whose info string is python, bash, sh, shell or console. The line right before it must
be a marker:

    <!-- test: run -->             run here, real model and data names replaced by tiny stand-ins (SUBSTITUTIONS)
    <!-- test: run images -->      the same, with DATA and STUDENT the tiny image dataset and student
    <!-- test: run after-train --> the same, in a folder where OUT is a finished tiny `hf-aft train` run
    <!-- test: readme ... -->      the README's Python API example, run by tests/test_readme_example.py
    <!-- test: skip REASON -->     not run, for the reason given (needs the Hub, a GPU, real data, ...)

A block without a marker fails test_every_example_is_run_or_skipped, so a new example cannot go untested silently.
Shell blocks are `hf-aft ...` lines (continued with a backslash, `#` comments allowed), run in this process through
`hf_aft.commands.main`, which must return 0.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import tiny

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = ("python", "bash", "sh", "shell", "console")
MARKER = re.compile(r"^<!-- test: (run|readme|skip)\b ?(.*?) ?-->$")
RUN_WORLDS = ("", "images", "after-train")


def examples() -> list[dict]:
    """Every example block of the pages: where it is, its language, its marker (or None) and its code."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = re.match(r"^```(\w*)", lines[i])
            if not fence:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if fence.group(1) in LANGUAGES:
                marker = MARKER.match(lines[i - 1]) if i else None
                found.append({"where": f"{page.relative_to(ROOT)}:{i + 1}", "language": fence.group(1),
                              "mode": marker.group(1) if marker else None, "arg": marker.group(2) if marker else "",
                              "code": "\n".join(lines[i + 1:end]) + "\n"})
            i = end + 1
    return found


def readme_python_example() -> str:
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_every_example_is_run_or_skipped_with_a_reason():
    found = examples()
    assert len(found) >= 20  # the collector sees the pages' examples
    problems = []
    for example in found:
        where, mode, arg = example["where"], example["mode"], example["arg"]
        if mode is None:
            problems.append(f"{where}: no `<!-- test: run|skip REASON -->` marker right before the block")
        elif mode == "skip" and len(arg) < 10:
            problems.append(f"{where}: a skipped example must say why (`<!-- test: skip REASON -->`)")
        elif mode == "run" and arg not in RUN_WORLDS:
            problems.append(f"{where}: unknown `run {arg}`; one of {RUN_WORLDS}")
        elif mode == "readme" and example["code"] != readme_python_example():
            problems.append(f"{where}: marked `readme` but differs from the README's Python API example")
    assert not problems, "\n".join(problems)
    assert sum(e["mode"] == "run" for e in found) >= 10


def test_readme_links_point_at_pages_that_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+\.(?:md|png))(?:#[^)]*)?\)", text)
    assert len(links) > 20
    missing = sorted({link for link in links if not (ROOT / link).exists()})
    assert not missing, missing


def test_site_builds_strict_with_every_option_in_the_cli_reference(tmp_path):
    """`make docs`, into a temporary folder: no warning (a broken link or anchor, a docstring mkdocstrings cannot
    read), and the CLI reference lists every field of the option dataclasses (it is generated from the parsers)."""
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**_env(), "NO_MKDOCS_2_WARNING": "1"})
    log = result.stdout + result.stderr
    assert result.returncode == 0 and "WARNING" not in log, log[-3000:]
    cli = (site / "reference" / "cli.html").read_text()  # use_directory_urls: false (the site opens from disk)
    from hf_aft.arguments import PeftArguments, ScriptArguments
    from hf_aft.config import AFTConfig

    for cls in (AFTConfig, ScriptArguments, PeftArguments):
        for name, f in cls.__dataclass_fields__.items():
            if f.metadata.get("help") != argparse.SUPPRESS:  # what --help hides, the reference hides
                assert f"--{name}" in cli, f"--{name} ({cls.__name__}) missing from the CLI reference"
    api = (site / "reference" / "python.html").read_text()
    for name in ("AFTTrainer", "AFTConfig", "extract_teacher_features", "train_student", "AdaptiveKernelLoss"):
        assert 'id="hf_aft.' in api and name in api, name
    for link, anchor in re.findall(r"\]\(docs/([^)#]+)\.md#([^)]+)\)", (ROOT / "README.md").read_text()):
        page = site / f"{link}.html"
        assert f'id="{anchor}"' in page.read_text(), f"README links to a missing anchor: {link}.md#{anchor}"


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


# ---- running the examples ----

@pytest.fixture(autouse=True)
def quick_cost_timing(monkeypatch):
    """The cost report times each model with one round of calls instead of a second of them (its figures are not
    checked here; tests/test_ops.py checks the report)."""
    import functools

    import hf_aft.timing

    monkeypatch.setattr(hf_aft.timing, "best_seconds",
                        functools.partial(hf_aft.timing.best_seconds, min_rounds=1, max_rounds=1, budget_s=0.0))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny stand-ins for the models and data the examples name, and one finished `hf-aft train` run."""
    from transformers import BertConfig, BertModel

    from hf_aft.commands import main

    root = tmp_path_factory.mktemp("docs_world")
    text_teachers = []
    for name, hidden in (("mpnet", 16), ("minilm", 12)):
        folder = tiny.save_teacher(root / name, hidden=hidden)
        BertModel(BertConfig(vocab_size=len(tiny.WORDS) + 5, hidden_size=hidden, num_hidden_layers=4,
                             num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64)
                  ).save_pretrained(folder)  # 4 layers: the examples cut a 3-layer student from it
        text_teachers.append(str(folder))
    classes = datasets.ClassLabel(names=["rotten", "fresh"])
    data = datasets.DatasetDict({name: tiny.sentiment_dataset(n, seed=seed).cast_column("label", classes)
                                 for name, n, seed in (("train", 20, 0), ("test", 8, 1))})
    data.save_to_disk(root / "data")
    images = datasets.DatasetDict({"train": tiny.image_dataset(8, seed=0), "test": tiny.image_dataset(4, seed=1)})
    images.save_to_disk(root / "images")
    names = {
        "sentence-transformers/all-mpnet-base-v2": text_teachers[0],
        "sentence-transformers/all-MiniLM-L6-v2": text_teachers[1],
        "openai-community/gpt2": str(tiny.save_decoder_teacher(root / "gpt2")),
        "path/to/model.gguf": str(tiny.save_gguf_teacher(root / "model.gguf")),
        "DATA": str(root / "data"),
        "STUDENT": str(tiny.save_student(root / "student")),
    }
    image_names = {
        "../shared/models/mobilenet_v2_imagenet": str(tiny.save_image_teacher(root / "mobilenet",
                                                                               kind="mobilenet_v2")),
        "facebook/dinov2-small": str(tiny.save_image_teacher(root / "dinov2", kind="vit")),
        "DATA": str(root / "images"),
        "STUDENT": str(tiny.save_image_student(root / "image-student")),
    }
    run = root / "finished-run"
    assert main(["train", "--model_name_or_path", names["STUDENT"], "--teachers", text_teachers[0], "--dataset_name",
                 names["DATA"], "--output_dir", str(run), "--max_steps", "2", "--skip_cost_report", "true"]) == 0
    return {"": names, "images": {**names, **image_names}, "after-train": names, "run": run}


def _run_shell(code: str, names: dict) -> None:
    from hf_aft.commands import main

    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if not tokens:
            continue
        assert tokens[0] == "hf-aft", f"a runnable shell example holds hf-aft commands only, not: {line}"
        argv = [names.get(token, token) for token in tokens[1:]]
        assert main(argv) == 0, f"exit status not 0: {line}"


def _runnable() -> list:
    seen, params = set(), []
    for example in examples():
        key = (example["mode"], example["arg"], example["code"])
        if example["mode"] == "run" and key not in seen:
            seen.add(key)
            params.append(pytest.param(example, id=example["where"]))
    return params


@pytest.mark.parametrize("example", _runnable())
def test_example_runs(example, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = world[example["arg"]]
    if example["arg"] == "after-train":
        shutil.copytree(world["run"], tmp_path / "OUT")
    if example["language"] == "python":
        code = example["code"]
        for name, path in names.items():
            code = code.replace(f'"{name}"', repr(path))
        exec(compile(code, example["where"], "exec"), {"__name__": "docs_example"})
    else:
        _run_shell(example["code"], names)
