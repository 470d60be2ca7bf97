"""Where a student is read from: a local folder that exists and holds weights, or a Hub id (checked before any teacher
runs, so that a mistyped or weightless folder is named in one line, with the flag that gave it)."""

from __future__ import annotations

import os

from .errors import AFTError
from .teachers.content_hash import check_model_weights


def check_student_path(name: str, flag: str = "--model_name_or_path") -> None:
    """A path-like name that does not exist is a missing folder, not a malformed Hub id; a folder holds weights."""
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    if looks_local and not os.path.exists(os.path.expanduser(name)):
        raise AFTError(f"could not load the student {name!r}: no such folder (check the path; a Hub id is ORG/NAME).")
    check_model_weights(name, f"the student {flag} {name!r}")
