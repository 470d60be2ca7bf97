"""A folder of images as datasets' imagefolder reads it, checked before it is read: its splits come from the names of
its files and folders (train, test, validation, ... in lower case, anywhere in a path), its classes from each image's
folder or from a metadata file listing it. Each layout it would misread (an image left out, an image in another
split than its folder's, a metadata file it does not read or that names a missing image) is one AFTError naming the
image and the fix."""

from __future__ import annotations

import functools
import os
import re

from .errors import AFTError

WORD_SEPARATORS = r"[-._ 0-9/\\]+"  # what datasets' split patterns allow around a split's name
# Split names of unlabelled rows on the Hub (IMDB's `unsupervised`) and in `hf-aft features`' output; no folder's.
UNLABELLED_SPLIT_NAMES = ("unlabeled", "unlabelled", "unsupervised")


@functools.cache
def split_keywords() -> dict[str, str]:
    """Each name datasets reads as a split (`train`, `dev`, `eval`, ...) -> that split."""
    from datasets.data_files import SPLIT_KEYWORDS

    return {word: str(split) for split, words in SPLIT_KEYWORDS.items() for word in words}


def split_words(path: str) -> list[str]:
    """The words of `path` that datasets reads as split names (whole words, in lower case), outermost first."""
    return [word for word in re.split(WORD_SEPARATORS, path) if word in split_keywords()]


def check_split_names_lower_case(folder: str, paths: list[str]) -> None:
    """datasets reads split names from files' and folders' names in lower case only: `Test.csv` or a `Test/` folder
    of images joins the train split without a word. Refuse it, naming the rename."""
    keywords = split_keywords()
    for path in paths:
        word = next((w for w in re.split(WORD_SEPARATORS, path) if w != w.lower() and w.lower() in keywords), None)
        if word:
            raise AFTError(f"{folder!r}: {path!r} is named after a split in capitals, but datasets reads split names "
                           f"in lower case only (its rows would join another split): rename {word!r} to "
                           f"{word.lower()!r}.")


def check_image_folder(folder: str, images: list[str], metadata: list[str], tables: list[str]) -> None:
    """`images`, `metadata` and other `tables` (paths relative to `folder`) are read as laid out: no table but
    metadata files (datasets reads a folder with images as images and leaves other tables out); no folder named after
    a split in capitals; each image read into one split (datasets' own patterns, `get_data_patterns`), the one the
    outermost split name in its path names; a metadata file in each split folder (not above them), listing exactly
    its images."""
    if tables:
        raise AFTError(f"{folder!r} holds images and {tables[0]!r}{_more(tables)}: datasets reads a folder with "
                       "images as an image folder and would leave that table out. Labels of the images go in a "
                       "metadata.csv (file_name, label) per split folder; a table of image paths goes in a folder "
                       "without images; anything else goes out of the folder.")
    check_split_names_lower_case(folder, sorted({os.path.dirname(path) + "/" for path in images if os.sep in path}))
    read = splits_read(folder)
    if read is not None:
        for path in images:
            check_read_once_into_its_split(folder, path, read.get(path, []), read)
    splits = sorted({path.split(os.sep)[0] for path in images if os.sep in path} & set(split_keywords()))
    above = [path for path in metadata if os.sep not in path]
    if splits and above:
        raise AFTError(f"{folder!r}: {above[0]!r} sits above the split folders {', '.join(f'{s}/' for s in splits)}, "
                       "where datasets does not read it (it would label each image by its split folder's name): put "
                       f"one {above[0]} in each split folder, its file_name column relative to that folder.")
    for path in metadata:
        check_metadata_lists_its_images(folder, path, images, [os.path.dirname(m) for m in metadata])


def splits_read(folder: str) -> dict[str, list[str]] | None:
    """Each file's path (relative to `folder`) -> the splits datasets reads it into, by its own patterns; None when
    datasets finds nothing to read (its own error, when loading, says so)."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        found = DataFilesDict.from_patterns(get_data_patterns(folder), base_path=folder)
    except Exception:
        return None
    read = {}
    for split, files in found.items():
        for file in files:  # as found under `folder`: a linked file keeps its name there
            splits = read.setdefault(os.path.relpath(file, folder), [])
            splits += [str(split)] if str(split) not in splits else []  # a file two of a split's patterns match
    return read


def check_read_once_into_its_split(folder: str, path: str, splits: list[str], read: dict) -> None:
    """The image at `path` is read into exactly one split: the one its outermost split name names, if any."""
    words = split_words(path)
    named = split_keywords()[words[0]] if words else None
    if len(splits) == 1 and named in (None, splits[0]):
        return
    sizes = {split: sum(split in v for v in read.values()) for split in sorted({s for v in read.values() for s in v})}
    example = {split: next(f for f, v in sorted(read.items()) if split in v) for split in sizes}
    counts = ", ".join(f"{split}: {n} file{'s' * (n != 1)}, e.g. {example[split]!r}" for split, n in sizes.items())
    inner = words[-1] if words else None
    rename = (f"rename the folder or file with {inner!r} in its name so that {inner!r} is no word of it (e.g. "
              f"'{inner}' -> '{inner}x'; datasets reads a split's name anywhere in a path, between - . _ space or "
              "digits)" if len(words) > 1 or (not splits and inner) else None)
    top = path.split(os.sep)[0] if os.sep in path else None
    if not splits and top and top.lower() in UNLABELLED_SPLIT_NAMES:  # a Hub dataset's split, not a folder's
        raise AFTError(f"{folder!r}: datasets reads no {top!r} split from a folder, only train, test and validation "
                       f"(and their other names), so it would leave out {path!r} and the rest of {top}/: move "
                       f"{top}/ out of {folder!r} and give it on its own as --unlabeled_dataset.")
    if not splits:
        raise AFTError(f"{folder!r}: datasets reads this folder's splits from the split names in its paths ({counts}) "
                       f"and would leave out {path!r}: " + (rename or "move it into its split's folder or out of the "
                                                               "folder; or, if an example there is no split (a class "
                                                               "or a file named with a split's word), rename it so "
                                                               "that no word of its name is a split's (e.g. 'test_3' "
                                                               "-> 'testx_3')") + ".")
    raise AFTError(f"{folder!r}: datasets would read {path!r} into the {' and '.join(splits)} split"
                   + ("s" if len(splits) > 1 else "") + (f", not {named!r}" if named not in splits else "")
                   + f": {rename or 'put it in its split folder'}.")


def check_metadata_lists_its_images(folder: str, path: str, images: list[str], others: list[str]) -> None:
    """The metadata file `path` names every image in its folder and below (less those of a deeper metadata file's
    folder among `others`, the metadata files' folders) and no missing image."""
    names = metadata_file_names(os.path.join(folder, path))
    if names is None:  # no file_name column: datasets' own error says so
        return
    base = os.path.dirname(path)
    here = {os.path.relpath(image, base or ".") for image in images if _under(image, base)
            and not any(_under(image, deeper) for deeper in others if deeper != base and _under(deeper, base))}
    listed = {os.path.normpath(name) for name in names}
    stems = {os.path.splitext(name)[0] for name in listed}  # datasets also matches a file_name without its extension
    missing = sorted(name for name in listed - here if name not in {os.path.splitext(h)[0] for h in here})
    unlisted = sorted(h for h in here - listed if os.path.splitext(h)[0] not in stems)
    if missing:
        raise AFTError(f"{folder!r}: {path!r} names {missing[0]!r}{_more(missing)}, which is not an image in its "
                       "folder: fix its file_name (relative to the metadata file's folder) or drop that row.")
    if unlisted:
        raise AFTError(f"{folder!r}: {path!r} does not list {os.path.join(base, unlisted[0])!r}{_more(unlisted)}, so "
                       "datasets would leave it out: add a row for it, or move it out of the folder.")


def metadata_file_names(path: str) -> list[str] | None:
    """The `file_name` column of an imagefolder metadata file (csv, jsonl or parquet), or None without one."""
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet

    readers = {".csv": pyarrow.csv.read_csv, ".jsonl": pyarrow.json.read_json, ".parquet": pyarrow.parquet.read_table}
    read = readers.get(os.path.splitext(path)[1].lower())
    if read is None:
        return None
    try:
        table = read(path)
    except Exception as error:  # datasets reports it when loading, naming the file
        raise AFTError(f"could not read the metadata file {path!r}: {str(error).splitlines()[0]}") from error
    return table.column("file_name").to_pylist() if "file_name" in table.column_names else None


def _under(path: str, base: str) -> bool:
    return not base or path.startswith(base + os.sep)


def _more(items: list) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""
