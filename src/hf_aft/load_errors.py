"""Why data could not be loaded, in one line: the reader's own error (not datasets' "An error occurred while
generating the dataset"), the file it came from when several were read, the way out for the usual encodings
mistakes, and for a name that is no local path what the Hub answered."""

from __future__ import annotations

import os

from datasets.exceptions import DatasetGenerationError

from .data_files import FILE_BUILDERS, conversion_cache, file_format, suffix
from .errors import one_line
from .hub_reach import hub_answer


def load_failure(error: BaseException, files: list[str]) -> str:
    """What went wrong reading data `files`: the reader's error, not datasets' "An error occurred while generating the
    dataset"; a file that is not UTF-8 or a JSON escape of half a UTF-16 surrogate pair with the way out. Of several
    files, the one that fails alone is named (the readers' errors do not say which)."""
    file = _failing_file(files)
    return (f"{file}: " if file else "") + _reader_error(error)


def _failing_file(files: list[str]) -> str | None:
    import datasets

    if len(files) < 2 or any(suffix(file) not in FILE_BUILDERS for file in files):  # one file, or an image folder
        return None
    for file in files:
        try:
            kwargs = {"delimiter": "\t"} if file_format(file) == "tsv" else {}
            datasets.load_dataset(FILE_BUILDERS[suffix(file)], data_files={"train": [file]},
                                  cache_dir=conversion_cache(), **kwargs)
        except Exception:  # noqa: BLE001 (any reader error: this is the file)
            return file
    return None  # each reads alone: the files disagree with one another (columns, types)


def _reader_error(error: BaseException) -> str:
    bad = error
    while bad is not None and not (isinstance(bad, UnicodeDecodeError) or "utf-8 sequence" in str(bad).lower()):
        bad = bad.__cause__ or bad.__context__  # Python's UnicodeDecodeError, pyarrow's "Invalid octet in UTF-8..."
    if bad is not None:
        return f"a file is not UTF-8 text ({one_line(bad)}): save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
    detail = one_line((isinstance(error, DatasetGenerationError) and (error.__cause__ or error.__context__)) or error)
    if "Error tokenizing data" in detail:  # pandas' csv reader: a row with more fields than the header
        detail += (" (a .csv is read as comma-separated, with commas inside a text quoted: a file separated by "
                   "semicolons, as spreadsheets save csv in some locales, needs saving again with commas, or as a "
                   ".tsv with tabs)")
    return detail + (" (an escape such as \\ud800 outside a surrogate pair is no character: fix or drop that text)"
                     if "surrogate" in detail else "")


def why_not_loaded(name: str, error: BaseException, files: list[str]) -> str:
    """Why `name` did not load; when it is no local path it was looked up on the Hub, and a mistyped folder then
    reads as a Hub failure ("Couldn't reach ... on the Hub"): say it is not here either."""
    if os.path.exists(name):
        return load_failure(error, files)
    return (f"{hub_answer(load_failure(error, files))}; no file or folder {name!r} here either (from {os.getcwd()}):"
            " check the path, or for a Hub dataset (ORG/NAME) the network or its copy in the cache")
