"""Facts about a run's inputs that the audit record, the cost report and `check-updates` share: where a teacher's
weight files are (a local folder, or the Hub cache snapshot of its commit) and their sha256, a split's size, label
distribution (or a regression's targets) and fingerprint, the student's initialisation and its revision, the
machine, the library versions."""

from __future__ import annotations

import glob
import os
import platform
from collections import Counter
from importlib import metadata
from pathlib import Path

from .errors import AFTError, one_line
from .teachers.content_hash import WEIGHT_SUFFIXES, file_sha256
from .teachers.spec import (
    GGUF_SEPARATOR,
    hub_revision,
    is_hub_revision,
    parse_teacher,
    resolve_revision,
    split_gguf,
)

LIBRARIES = ("hf-aft", "torch", "transformers", "datasets", "accelerate", "huggingface_hub", "peft", "tokenizers",
             "safetensors", "numpy", "scikit-learn", "onnxruntime", "onnxscript")


def library_versions() -> dict[str, str]:
    """Installed versions of hf-aft and the libraries a run depends on (those installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def device_name(processes: int = 1) -> str:
    """The accelerator's name, else the CPU model (from /proc/cpuinfo on Linux) with the torch thread count (per
    process, when `processes` > 1)."""
    import torch

    on = f", {processes} processes" if processes > 1 else ""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}{on}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    threads = torch.get_num_threads()
    each = " each" if processes > 1 else ""
    return f"cpu: {model} ({threads} thread{'s' if threads != 1 else ''}{each}{on})"


def teacher_source(spec: str) -> tuple[str, str | None, str | None]:
    """(name, requested revision or None, GGUF file or None) of a teacher spec."""
    source, gguf_file = split_gguf(spec)
    name, requested = parse_teacher(source)
    return name, requested, gguf_file


def local_path(spec: str) -> str | None:
    """The absolute path of a local model spec (a folder, a .gguf file, FOLDER::FILE.gguf with the folder made
    absolute); None for a Hub id or a path that does not exist here."""
    source, separator, gguf_file = os.fspath(spec).partition(GGUF_SEPARATOR)
    return os.path.abspath(source) + separator + gguf_file if os.path.exists(source) else None


def source_path(spec: str | None) -> str | None:
    """The absolute form of a local source as `--dataset_name` and the model options take it: a folder or file (a
    GGUF file as in `local_path`), or comma-separated files or glob patterns, each made absolute; None for a Hub id
    or a name of which some part is not found here."""
    if not spec:
        return None
    if (path := local_path(os.path.expanduser(spec))) is not None:
        return path
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) < 2 and not glob.has_magic(spec):
        return None
    found = [os.path.abspath(os.path.expanduser(p)) for p in parts if glob.glob(os.path.expanduser(p))]
    return ",".join(found) if len(found) == len(parts) else None


def teacher_folder(name: str, revision: str) -> Path:
    """A local teacher's folder, or the Hub cache snapshot of the commit `revision` of a Hub teacher.

    Raises:
        AFTError: a Hub teacher whose snapshot is not in the local Hub cache.
    """
    if os.path.isdir(name) or not is_hub_revision(revision):
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=hub_revision(revision), local_files_only=True))
    except Exception as error:
        raise AFTError(f"teacher {name}@{revision} is not in the local Hub cache: {one_line(error)}") from error


def weight_files(folder: Path, gguf_file: str | None = None) -> dict[str, Path]:
    """The weight files of a model folder (relative path -> path), or only its GGUF file when one is named."""
    if gguf_file:
        return {gguf_file: folder / gguf_file} if (folder / gguf_file).is_file() else {}
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES}


def file_hashes(files: dict[str, Path]) -> dict[str, str]:
    """sha256 (hex) of each file (`huggingface_hub`'s `sha_fileobj`, as the Hub hashes LFS files)."""
    return {name: file_sha256(path) for name, path in files.items()}


def folder_size(files: dict[str, Path]) -> int:
    """Bytes on disk of the files (symlinks of the Hub cache followed)."""
    return sum(os.path.getsize(path) for path in files.values())


def current_revision(spec: str, role: str = "teacher") -> str:
    """What a model spec resolves to now: the commit its branch or tag points at on the Hub (the Hub cache
    offline), or the content hash of a local folder or GGUF file (`hf_aft.teachers.spec.resolve_revision`). `role`
    names the model in errors (teacher, generator, distill teacher)."""
    from .teachers.spec import gguf_file_revision, pinned_locally

    source, gguf_file = split_gguf(spec, role)
    name, requested = parse_teacher(source)
    if gguf_file and os.path.isdir(name):
        if requested:  # as a teacher's (teachers._revision_of): a local file has no Hub revision
            raise pinned_locally(role, spec, requested, "GGUF file")
        return gguf_file_revision(name, gguf_file)
    return resolve_revision(name, requested, role)


def split_summary(dataset, label_column: str, input_column: str | None = None, labels=None) -> dict:
    """Rows, label distribution (label -> count; a multi-label or token split counts each class of a row) and
    fingerprint of one split, and the sha256 of its `input_column` and labels (`group_report.rows_sha256`: a rerun
    compares content, not only counts). A regression's targets (`labels`, the run's targets, says so; without it, a
    float column) get their mean, standard deviation, minimum and maximum instead, per target name when several."""
    if dataset is None:
        return {}
    summary = _label_summary(dataset, label_column, labels)
    if input_column in dataset.column_names:
        from .group_report import rows_sha256

        hashed = [c for c in (input_column, label_column) if c in dataset.column_names]
        summary["rows_sha256"] = rows_sha256(dataset, hashed)
    return summary


def _label_summary(dataset, label_column: str, labels=None) -> dict:
    feature = dataset.features.get(label_column)
    values = dataset[label_column] if label_column in dataset.column_names else []
    inner = getattr(feature, "feature", None)  # lists: of classes, or of a regression's targets
    regression = (labels.problem_type == "regression" if labels is not None
                  else getattr(inner or feature, "dtype", "").startswith("float"))
    if regression and values:
        names = labels.names if labels is not None else None
        return {"rows": len(dataset), "targets": _targets_summary(values, names), "fingerprint": dataset._fingerprint}
    if inner is not None:
        feature, values = inner, [v for row in values for v in (row or [])]
    counts = Counter(values)
    names = getattr(feature, "names", None)
    distribution = {(names[k] if names and isinstance(k, int) else str(k)): n for k, n in sorted(counts.items())}
    return {"rows": len(dataset), "labels": distribution, "fingerprint": dataset._fingerprint}


def _targets_summary(values: list, names: list[str] | None) -> dict:
    """One target's summary (`_target_summary`), or several's by name (a list of numbers per row: each target
    summarised on its own, not its numbers counted as classes)."""
    import numpy as np

    rows = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if rows.ndim < 2:
        return _target_summary(rows)
    names = names if names and len(names) == rows.shape[1] else [f"target {i}" for i in range(rows.shape[1])]
    return {name: _target_summary(rows[:, i]) for i, name in enumerate(names)}


def _target_summary(values) -> dict:
    import numpy as np

    finite = np.asarray(values, dtype=np.float64)
    return {"mean": float(finite.mean()), "std": float(finite.std()), "min": float(finite.min()),
            "max": float(finite.max())} if finite.size else {}


def student_revision(name: str) -> str:
    """The student initialisation's revision: a content hash for a local folder, the commit sha for a Hub id
    ("unknown" when it cannot be resolved)."""
    try:
        return resolve_revision(name, None, "student")
    except AFTError:
        return "unknown"


def teacher_specs(teachers: list[str] | None, infos: list | None) -> list[str | None]:
    """The teacher given for each slice of the features (None where the features came with the dataset); none at all
    when the run used no features (`--transfer none`, whatever `--teachers` says)."""
    if not infos:
        return []
    return list(teachers) if teachers and len(teachers) == len(infos) else [None] * len(infos)
