"""The content hash that is a local model's revision (`local-v2-<hex>`, `gguf-v2-<hex>`): sha256 over the names and
contents of every file of its folder that can change what the model computes. Rather than a list of names (which
left out custom code, DeBERTa's spm.model, processor configs, ...), every file counts but those that cannot matter:
documentation and images, hidden files (.git, huggingface_hub's .cache of download metadata), Python bytecode, and
in an hf-aft run folder the run's own records and checkpoints (another hf-aft command may rewrite them; the model
loads from the folder's top level). Subfolders count (sentence-transformers modules, custom code's assets): a
change there is a new revision too, if one the model may not read. Every file is read, large ones too (ONNX exports
beside the weights): a hash skipping some would miss their edits.

Revisions of earlier hf-aft versions (`local-<hex>`: the weights and a fixed list of config and tokenizer names;
`gguf-<hex>`: the GGUF file alone) stay in old audit records, checkpoints and feature datasets: `legacy_revision`
computes that older hash again, so that such a record is compared in its own terms (`spec.revision_in_scheme_of`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub.utils import sha as hub_sha

from ..errors import AFTError

LOCAL_PREFIX, GGUF_PREFIX = "local-", "gguf-"  # revisions that are content hashes, not Hub commits
SCHEME = "v2-"  # after the prefix: the hash of every file that can matter (no hex digit: never an older hash)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
# The config and tokenizer names the earlier hash read beside the weights (`legacy_revision` only).
LEGACY_CONFIGS = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                  "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
                  "spiece.model", "sentencepiece.bpe.model")
# Files no model or tokenizer reads: documentation, licences and pictures (a card's plots), bytecode of hashed code.
NOT_READ_STEMS = {"readme", "license", "licence", "copying", "notice", "citation"}  # LICENSE, LICENSE.txt, ...
NOT_READ_SUFFIXES = (".md", ".rst", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pyc")
# What hf-aft writes beside the student it trained (audit.py, outputs.py, card.py, ...; tests check the names): a run
# folder used as a model keeps its revision when a later command rewrites a record. Top level only, in a folder that
# holds one of RUN_MARKERS.
RUN_MARKERS = ("hf_aft_complete.json", "audit.json")
RUN_RECORDS = {*RUN_MARKERS, "recipe.yaml", "transfer_state.safetensors", "transfer_summary.json",
               "cost_report.json", "group_report.json", "eval_predictions.json", "update_report.json",
               "model_card.json", "beta_search.json"}
RUN_CHECKPOINTS = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR: a run's intermediate states
NO_WEIGHTS_WAY_OUT = "check the path: give the folder that holds the model's weights and config.json."


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in blocks (huggingface_hub's `sha_fileobj`, as the Hub hashes LFS files)."""
    with open(path, "rb") as f:
        return hub_sha.sha_fileobj(f).hex()


def _skipped(name: str, run_top: bool, folder: bool) -> bool:
    if name.startswith(".") or name == "__pycache__":
        return True
    if folder:
        return run_top and name.startswith(RUN_CHECKPOINTS)
    stem, _, suffix = name.lower().partition(".")
    return ((stem in NOT_READ_STEMS and suffix in ("", "txt", "cff")) or name.lower().endswith(NOT_READ_SUFFIXES)
            or (run_top and name in RUN_RECORDS))


def hashed_files(folder: Path, recursive: bool = True) -> list[tuple[str, Path]]:
    """(relative posix name, path) of each file of `folder` that can matter, sorted; subfolders when `recursive`
    (symlinked folders are not followed, as before)."""
    run = any((folder / name).is_file() for name in RUN_MARKERS)
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root).relative_to(folder)
        top = run and here == Path(".")
        dirs[:] = [d for d in dirs if recursive and not _skipped(d, top, True)]
        found += [((here / name).as_posix(), Path(root, name)) for name in files
                  if not _skipped(name, top, False) and Path(root, name).is_file()]
    return sorted(found)


def _digest(files: list[tuple[str, Path]]) -> str:
    listing = "\n".join(f"{name} {file_sha256(path)}" for name, path in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def hash_folder(folder: Path, role: str = "teacher", gguf_file: str | None = None) -> str:
    """sha256 over the files of `folder` that can matter (names and contents): a changed model gets new features, an
    unchanged one reuses them. With `gguf_file`: that file and the other files of the folder's top level that are no
    weights (transformers reads a tokenizer config or custom code beside a GGUF file, not other quantisations)."""
    if gguf_file:
        beside = [(name, path) for name, path in hashed_files(folder, recursive=False)
                  if not name.endswith(WEIGHT_SUFFIXES)]
        return _digest(sorted([*beside, (gguf_file, folder / gguf_file)]))
    files = hashed_files(folder)
    if not any(name.endswith(WEIGHT_SUFFIXES) for name, _ in files):
        raise AFTError(f"{role} folder {str(folder)!r} holds no weight files (*.safetensors, *.bin, *.gguf, ...): "
                       f"{NO_WEIGHTS_WAY_OUT}")
    return _digest(files)


def is_legacy(revision: str) -> bool:
    """A content hash written by an earlier hf-aft (before `SCHEME`)."""
    return revision.startswith((LOCAL_PREFIX, GGUF_PREFIX)) and \
        not revision.startswith((LOCAL_PREFIX + SCHEME, GGUF_PREFIX + SCHEME))


def legacy_revision(folder: Path, gguf_file: str | None = None) -> str:
    """The revision an earlier hf-aft gave this folder (weights and `LEGACY_CONFIGS`, hidden folders included) or
    GGUF file (that file alone), computed as it did."""
    if gguf_file:
        return GGUF_PREFIX + file_sha256(folder / gguf_file)[:16]
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in LEGACY_CONFIGS))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise AFTError(f"folder {str(folder)!r} holds no weight files (*.safetensors, *.bin, *.gguf, ...): "
                       f"{NO_WEIGHTS_WAY_OUT}")
    listing = "\n".join(f"{p.relative_to(folder).as_posix()} {file_sha256(p)}" for p in files)
    return LOCAL_PREFIX + hashlib.sha256(listing.encode()).hexdigest()[:16]


def check_model_weights(name: str | os.PathLike, who: str) -> None:
    """A local model folder (`who`: how the command names it, e.g. "the student --from 'nw'") holds weight files, else
    transformers' raw text ("Unrecognized model", "no file named model.safetensors") or an OSError traceback."""
    folder = Path(os.path.expanduser(os.fspath(name)))
    if folder.is_dir() and not any(path.endswith(WEIGHT_SUFFIXES) for path, _ in hashed_files(folder)):
        raise AFTError(f"{who} is a folder that holds no weight files (*.safetensors, *.bin, *.gguf, ...): "
                       f"{NO_WEIGHTS_WAY_OUT[:-1]}, or a Hub id.")
