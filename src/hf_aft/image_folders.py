"""A folder of images as datasets' imagefolder reads it, checked before it is read: its splits come from the names of
its files and folders (train, test, validation, ... in lower case, anywhere in a path), its classes from each image's
folder or from a metadata file listing it. Each layout it would misread (an image left out, an image in another
split than its folder's, a metadata file it does not read or that names a missing image) is one AFTError naming the
image and the fix."""

from __future__ import annotations

import os
import re

from .errors import AFTError

WORD_SEPARATORS = r"[-._ 0-9/\\]+"  # what datasets' split patterns allow around a split's name


def split_keywords() -> dict[str, str]:
    """Each name datasets reads as a split (`train`, `dev`, `eval`, ...) -> that split."""
    from datasets.data_files import SPLIT_KEYWORDS

    return {word: str(split) for split, words in SPLIT_KEYWORDS.items() for word in words}


def split_word(path: str) -> str | None:
    """The first word of `path` that datasets reads as a split's name (a whole word, in lower case), or None."""
    keywords = split_keywords()
    return next((word for word in re.split(WORD_SEPARATORS, path) if word in keywords), None)


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
    metadata files (datasets reads a folder with images as images and leaves other tables out); with split folders at
    the top (train/, test/), every image is in one and no name below them is a split's; without, no name is a split's;
    a metadata file sits in a split folder (or at the top of a folder without splits) and lists exactly its images."""
    if tables:
        raise AFTError(f"{folder!r} holds images and {tables[0]!r}{_more(tables)}: datasets reads a folder with "
                       "images as an image folder and would leave that table out. Labels of the images go in a "
                       "metadata.csv (file_name, label) per split folder; a table of image paths goes in a folder "
                       "without images; anything else goes out of the folder.")
    tops = sorted({path.split(os.sep)[0] for path in images if os.sep in path})
    check_split_names_lower_case(folder, [f"{top}/" for top in tops])
    splits = [top for top in tops if top in split_keywords()]
    for path in images:
        parts = path.split(os.sep)
        if splits and parts[0] not in splits:
            raise AFTError(f"{folder!r}: datasets reads the images of the split folders ({', '.join(splits)}) only "
                           f"and would leave out {path!r}: move it into its split's folder, or out of the folder (or, "
                           f"where {splits[0]!r} is a class and not a split, rename it so that no word of its name is "
                           f"a split's, e.g. '{splits[0]}x').")
        word = split_word("/".join(parts[1:] if splits else parts))
        if word:
            where = f"inside the split folder {parts[0]!r}" if splits else "in a folder without split folders"
            raise AFTError(f"{folder!r}: {path!r} has {word!r} in its path {where}, and datasets reads that word as "
                           f"the {split_keywords()[word]!r} split wherever it stands (the image would be read into "
                           f"that split, or left out): rename that folder or file so that {word!r} is no word of "
                           f"its name (e.g. '{word}_x' -> '{word}x')" + (", or put the split folders at the top."
                                                                         if not splits else "."))
    above = [path for path in metadata if os.sep not in path]
    if splits and above:
        raise AFTError(f"{folder!r}: {above[0]!r} sits above the split folders {', '.join(f'{s}/' for s in splits)}, "
                       "where datasets does not read it (it would label each image by its split folder's name): put "
                       f"one {above[0]} in each split folder, its file_name column relative to that folder.")
    for path in metadata:
        check_metadata_lists_its_images(folder, path, images, [os.path.dirname(m) for m in metadata])


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
    missing, unlisted = sorted(listed - here), sorted(here - listed)
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
