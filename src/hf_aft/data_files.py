"""Which local files a `--dataset_name` names, and whether datasets can read them as one dataset: comma-separated
files or glob patterns, or a folder of data files. Each shape that cannot load is one AFTError naming the file and
the fix (a missing file, a pattern matching nothing, a format hf-aft does not read, files of different formats),
before datasets would say something unrelated ("could not find any data file", a Hub lookup of the file's name)."""

from __future__ import annotations

import atexit
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

from .errors import AFTError, held_back, one_line, warn_once
from .filesystems import nearest_existing
from .hub_reach import note_cached, offline_if_unreachable
from .image_folders import (
    UNLABELLED_SPLIT_NAMES,
    WORD_SEPARATORS,
    check_image_folder,
    check_split_names_lower_case,
    splits_read,
)

logger = logging.getLogger(__name__)

# Suffix -> the datasets builder that reads it (a `.tsv` is csv read with a tab delimiter).
# datasets reads CSV files with pandas, whose default missing-value markers turn such texts into nulls
CSV_MISSING = ("a CSV cell that reads NA, N/A, NULL, None or NaN is missing too, as pandas reads CSV files: give "
               "such texts as JSON lines or parquet")
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# What a folder of data files may hold for `datasets.load_dataset(folder)` to make a labelled dataset of it.
IMAGE_SUFFIXES = set(ImageFolder.EXTENSIONS)  # every image datasets' imagefolder reads (.png, .ppm, .jfif, ...)
DATA_SUFFIXES = {*FILE_BUILDERS, ".arrow", *IMAGE_SUFFIXES}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # datasets reads `train.csv.gz` as csv
READABLE = "csv, tsv, json, jsonl or parquet"
BESIDE_DATA = {"state.json", "dataset_info.json", "dataset_dict.json"}  # datasets' own files beside Arrow data


def suffix(path: str) -> str:
    """A data file's format suffix, lower case, past a compression suffix (`train.csv.gz`: `.csv`)."""
    stem, ext = os.path.splitext(path)
    if ext.lower() in COMPRESSIONS:
        ext = os.path.splitext(stem)[1]
    return ext.lower()


def file_format(path: str) -> str:
    """What datasets reads a file as: `.json` and `.jsonl` are both json; `.tsv` is not csv (another delimiter)."""
    ext = suffix(path)
    return "tsv" if ext == ".tsv" else FILE_BUILDERS.get(ext, ext)


def _looks_like_files(parts: list[str]) -> bool:
    """Whether `--dataset_name` names local files (else a Hub id or a folder)."""
    return any(os.path.isfile(os.path.expanduser(p)) or glob.has_magic(p) or suffix(p) in DATA_SUFFIXES
               or os.path.splitext(p)[1].lower() in COMPRESSIONS or p.startswith((".", "/", "~")) for p in parts)


def named_files(name: str) -> list[str]:
    """The local data files `name` names (comma-separated paths or glob patterns), in order; [] for a Hub id or a
    single folder."""
    whole = os.path.expanduser(name)
    if os.path.isdir(whole):  # a folder, its name may hold a comma
        return []
    parts = [name] if os.path.isfile(whole) else [p.strip() for p in name.split(",") if p.strip()]
    if (len(parts) == 1 and os.path.isdir(os.path.expanduser(parts[0]))) or not _looks_like_files(parts):
        return []
    files = [path for part in parts for path in _expand(part)]
    twice = next((f for f, n in Counter(os.path.realpath(f) for f in files).items() if n > 1), None)
    if twice:
        raise AFTError(f"dataset file {twice!r} is named twice (its rows would count twice): name each file "
                       "once.")
    check_one_format(files)
    return files


# What data files named directly become, and the way to more splits (the file names datasets reads as split names).
ONE_SPLIT = ("data files named directly form one split, 'train': put each split in a file named after it (train, "
             "test or validation, e.g. train.csv and test.csv) in one folder, and give the folder")


def missing_split(split: str, have: list[str], source: str | None, way_out: str) -> AFTError:
    """The refusal of a split that the data from `source` lacks, ending with `way_out`. Data files named directly
    (one file, comma-separated files, a pattern) form one split, `train`, which no split option can change: the way
    out is then a folder of files named by split."""
    if source and have == ["train"] and named_files(source):
        way_out = ONE_SPLIT
    return AFTError(f"split {split!r} not found; the dataset has splits {have}: {way_out}.")


def _expand(part: str) -> list[str]:
    path = os.path.expanduser(part)
    matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not matches:
        raise AFTError(f"dataset pattern {part!r} matches no file: check the pattern, or list the files "
                       "comma-separated.")
    for match in matches:
        if os.path.isdir(match):
            raise AFTError(f"dataset {match!r} is a folder: give one folder alone, or data files (comma-separated), "
                           "not both.")
        if not os.path.exists(match):
            raise AFTError(f"dataset file or folder {part!r} does not exist: check the path (a Hub dataset is "
                           "ORG/NAME).")
        if suffix(match) in IMAGE_SUFFIXES:
            raise AFTError(f"dataset file {match!r} is an image: give the folder that holds the images (an image "
                           f"folder: {os.path.dirname(os.path.abspath(match))!r}), or a csv of their paths.")
        if suffix(match) not in FILE_BUILDERS:
            raise AFTError(f"dataset file {match!r} is not a data file hf-aft reads ({suffix(match) or 'no suffix'}): "
                           f"give {READABLE} files, a folder of them or of images, or a folder written by "
                           "save_to_disk.")
    return matches


def check_one_format(files: list[str], where: str = "") -> None:
    """Data files of one format (datasets reads one builder per dataset: a csv and a json file would otherwise be
    "no data file found")."""
    formats = {file_format(f) for f in files}
    if len(formats) > 1:
        shown = ", ".join(sorted({suffix(f) for f in files}))
        raise AFTError(f"the data files{where} have different formats ({shown}): give files of one format.")


def folder_data_files(folder: str) -> list[str]:
    """The data files of a folder that is not a `save_to_disk` dataset, of one format (images aside, and an image
    folder's metadata file); a folder without any is one AFTError (else `load_dataset` would, say, read its
    README.txt as a text dataset and fail later on a missing column)."""
    found, others = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]  # what datasets leaves out: hidden, __MACOSX
        linked = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        if linked:
            raise AFTError(f"{folder!r}: {os.path.relpath(os.path.join(root, linked[0]), folder)!r} is a link to a "
                           "folder, which datasets does not follow (its files would be left out): copy the folder in.")
        for path in [os.path.join(root, file) for file in names if not file.startswith((".", "__"))]:
            if not os.path.exists(path):  # a broken link: datasets leaves it out, and the split check would blame it
                raise AFTError(f"{folder!r}: {os.path.relpath(path, folder)!r} is a link to {os.readlink(path)!r}, "
                               "which does not exist: fix or remove the link.")
            (found if suffix(path) in DATA_SUFFIXES else others).append(path)
    if not found:
        shown = ", ".join(sorted(os.path.relpath(f, folder) for f in others)[:5]) or "nothing"
        raise AFTError(f"{folder!r} is not a dataset folder: it holds no save_to_disk dataset (dataset_dict.json) and "
                       f"no {READABLE} data files or images (it holds {shown}). Give a folder written by "
                       "save_to_disk or hf-aft features, a folder of train.csv/test.csv..., or the data files.")
    tables = [f for f in found if suffix(f) not in IMAGE_SUFFIXES and os.path.basename(f) not in BESIDE_DATA
              and not os.path.basename(f).startswith("metadata.")]  # an image folder's labels
    check_one_format(tables, f" in {folder!r}")
    if any(suffix(f) in IMAGE_SUFFIXES for f in found):  # an image folder's tables are labels, read apart
        relative = [os.path.relpath(f, folder) for f in found]
        check_image_folder(folder, [f for f in relative if suffix(f) in IMAGE_SUFFIXES],
                           [f for f in relative if os.path.basename(f).startswith("metadata.")],
                           sorted(os.path.relpath(f, folder) for f in tables))
    else:
        check_every_file_read(folder, tables)
    return found


def check_every_file_read(folder: str, tables: list[str]) -> None:
    """datasets reads a folder's splits from its files' and subfolders' names (train, test, validation, dev, ...), in
    lower case only: a data file named after no split, beside one that is, is left out without a word, and
    `Test.csv` joins the train split. Refuse both, naming the file."""
    relative = sorted(os.path.relpath(f, folder) for f in tables)
    check_split_names_lower_case(folder, relative)
    read = splits_read(folder)
    if read is None:  # nothing datasets can read: its own error, when loading, says so
        return
    left = [path for path in relative if path not in read]
    pool = next((path for path in left if _unlabelled_word(path)), None)
    if pool:  # unlabeled.csv beside train.csv: a Hub dataset's split name, which no folder of data files has
        raise AFTError(f"{folder!r}: datasets reads no {_unlabelled_word(pool)!r} split from a folder of data files, "
                       f"only train, test and validation, so it would leave out {pool!r}: move it out of the folder "
                       "and give it on its own as --unlabeled_dataset.")
    if left:
        more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
        raise AFTError(f"{folder!r}: datasets reads a folder's splits from its files' and subfolders' names (train, "
                       f"test or validation, e.g. train.csv or train/) and would leave out {left[0]!r}{more}: name "
                       "it after its split or put it in its split's subfolder, as the folder's other files are, or "
                       "move it out of the folder.")


def _unlabelled_word(path: str) -> str | None:
    """The word of `path` that names unlabelled rows (`unlabeled.csv`, `unsupervised-0.jsonl`), or None."""
    return next((w for w in re.split(WORD_SEPARATORS, path.lower()) if w in UNLABELLED_SPLIT_NAMES), None)


def check_not_empty(paths: list[str]) -> None:
    """A data file with nothing in it (or only blank lines; a csv with its header alone) is one line naming it:
    datasets fails on it with "An error occurred while generating the dataset", a bare StopIteration or "Instruction
    'train' corresponds to no data"."""
    for path in paths:
        if os.path.getsize(path) >= 4096:  # has rows (the cases below are a few bytes)
            continue
        lines = Path(path).read_bytes().split(b"\n")
        if not any(line.strip() for line in lines):
            raise AFTError(f"the file {path!r} is empty: fill it, or leave it out of the files given.")
        if suffix(path) in (".csv", ".tsv") and sum(bool(line.strip()) for line in lines) == 1:
            raise AFTError(f"the file {path!r} has a header and no rows: fill it, or leave it out of the files given.")


def check_saved_rows(folder: str) -> None:
    """A `save_to_disk` folder (a Dataset, or each split of a DatasetDict) whose split has no rows is one line naming
    it: datasets saves an empty dataset without a data file and then fails to load it ("list index out of range")."""
    splits = [folder]
    if os.path.exists(os.path.join(folder, "dataset_dict.json")):
        with open(os.path.join(folder, "dataset_dict.json")) as f:
            splits = [os.path.join(folder, split) for split in json.load(f).get("splits", [])]
    for split in splits:
        try:
            with open(os.path.join(split, "state.json")) as f:
                files = json.load(f).get("_data_files")
        except (OSError, ValueError):
            continue  # datasets names what it cannot read
        if files == []:
            raise AFTError(f"the dataset saved in {split!r} has no rows: save it again with its rows.")


def check_parquet_columns(paths: list[str]) -> None:
    """A parquet file with two columns of the same name is one line naming it (datasets fails on it with an
    unrelated message)."""
    import pyarrow.parquet as pq

    for path in paths:
        try:
            names = pq.read_schema(path).names
        except Exception as error:
            raise AFTError(f"could not read the parquet file {path!r}: {one_line(error)}") from error
        twice = [column for column, count in Counter(names).items() if count > 1]
        if twice:
            raise AFTError(f"the parquet file {path!r} has a duplicate column {twice[0]!r} (columns {names}): "
                           "give each column its own name.")
    from .class_sets import check_class_orders  # each file's ClassLabel names, which datasets would drop
    check_class_orders(paths)


def hub_saved_folder(name: str) -> str | None:
    """A Hub dataset repo holding a `save_to_disk` folder (what `hf-aft features --push_to_hub` writes): its local
    snapshot, so that it loads with its teachers' provenance. None for any other dataset."""
    if os.path.exists(name):
        return None
    offline_if_unreachable()  # before the first request: an unreachable Hub would be retried for 30-50 s
    if name.count("/") != 1:
        return None
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        hf_hub_download(name, "dataset_dict.json", repo_type="dataset")
    except Exception:  # not there, not a repo, or offline without it cached: load it the usual way
        return None
    note_cached(f"dataset {name}")
    return snapshot_download(name, repo_type="dataset")


def load_by_name(name: str, config: str | None, cache_dir: str | None):
    """`datasets.load_dataset(name, config)` for a Hub id or a folder of data files, refusing what datasets answers
    a name that is no local path with from its cache of local folders (`check_not_a_cached_folder`); datasets' notes
    (its offline fallback's) are said only once the data stands, so a refusal stays one line."""
    import datasets

    offline_if_unreachable(name)
    with held_back("datasets") as said:
        loaded = datasets.load_dataset(name, config, cache_dir=cache_dir)
    if not os.path.isdir(name):
        check_not_a_cached_folder(name, loaded)
        note_cached(f"dataset {name}")
    for record in said:
        logging.getLogger(record.name).handle(record)
    return loaded


def check_not_a_cached_folder(name: str, loaded) -> None:
    """Refuse what datasets returns for a name that is neither a local path nor a namespaced Hub id (`owner/name`)
    when it is the cached copy of a local folder once loaded under that name: offline, datasets falls back to the
    latest dataset cached as `<cache>/<name>/` (a folder `data` loaded from another directory, or another project),
    while a Hub dataset is cached as `<cache>/<owner>___<name>/`. `loaded`: a Dataset or DatasetDict.

    Raises:
        AFTError: the rows came from such a cached copy.
    """
    if "/" in name:
        return
    splits = loaded.values() if hasattr(loaded, "values") else [loaded]
    files = [f["filename"] for split in splits for f in split.cache_files]
    if files and all(len(Path(f).parents) > 3 and Path(f).parents[3].name == name for f in files):
        raise AFTError(f"dataset {name!r} is not a local folder or file here, and what datasets returned for it is "
                       f"the cached copy of a local folder once loaded under that name ({Path(files[0]).parents[3]}),"
                       " not a Hub dataset: give the path of the data you mean (or a Hub id as owner/name).")


def conversion_cache() -> str | None:
    """Where datasets converts data files to Arrow: its cache (None: the default), or, when that cache is read-only
    (a shared cache mounted read-only, which can still hold every teacher feature a run needs), a temporary folder
    removed when the process ends."""
    global _CONVERSION_CACHE
    import datasets

    root = datasets.config.HF_DATASETS_CACHE
    if os.access(nearest_existing(root), os.W_OK | os.X_OK):
        return None
    if _CONVERSION_CACHE is None:
        _CONVERSION_CACHE = tempfile.mkdtemp(prefix="hf_aft_datasets_")
        atexit.register(shutil.rmtree, _CONVERSION_CACHE, ignore_errors=True)
        warn_once(logger, f"hf-aft: the datasets cache {str(root)!r} is read-only: data files are converted in "
                          f"{_CONVERSION_CACHE} (removed at exit); teacher features are read from the cache.")
    return _CONVERSION_CACHE


_CONVERSION_CACHE: str | None = None


def drop_new_locks(since: float) -> None:
    """datasets leaves its builder locks (and their empty folders) in its cache when a conversion fails on a full
    disk: a failed load leaves none behind (only what it made since `since`, a `time.time()`, is removed)."""
    import datasets

    root = Path(datasets.config.HF_DATASETS_CACHE)
    for lock in root.rglob("*.lock"):
        if lock.stat().st_mtime >= since:
            lock.unlink(missing_ok=True)
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if folder.stat().st_mtime >= since and not any(folder.iterdir()):
            folder.rmdir()


def check_utf8(values, column: str, split: str) -> None:
    """Every text of `values` (a split's `column`, a pyarrow ChunkedArray) is valid UTF-8 (Arrow's full validation): a
    file in another encoding is named with its first bad row, not a UnicodeDecodeError when a text is first read."""
    import pyarrow as pa

    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        rows = (value for chunk in values.chunks for value in chunk.cast(pa.binary()).to_pylist())
        row = next(i for i, value in enumerate(rows) if value is not None and not _decodes(value))
        raise AFTError(f"the {split} split's column {column!r} is not UTF-8 text at row {row}: save the file as UTF-8 "
                       "(e.g. iconv -f latin1 -t utf-8), or drop that row.") from None


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
