"""The one exception type users see: a one-line message that names the problem and the way out."""

from __future__ import annotations

import contextlib
import importlib
import logging
import re


class AFTError(ValueError):
    """Bad input to hf-aft. The CLI prints its message on one line, without a traceback (`HF_AFT_DEBUG=1` shows the
    traceback and the chain of causes: every AFTError raised from another error keeps it as `__cause__`)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a one-line error
    quotes of the library error underneath."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def one_line(error: BaseException) -> str:
    """An exception's whole message on one line, whitespace collapsed (its type name when the message is empty): a
    library message that spans lines (TrainingArguments lists what it found below its first line, YAML says where
    on the next) keeps its facts."""
    return " ".join(str(error).split()) or type(error).__name__


# The extras of pyproject.toml by the modules their packages provide, and every optional module with the extra that
# brings it (onnx and onnx_ir come with onnxscript): a missing one is one line naming that pip install. onnx is
# checked up front too: torch's exporter imports it lazily, so an already-imported torch.onnx would not.
EXTRA_MODULES = {"export": ("onnx", "onnxruntime", "onnxscript"), "gguf": ("gguf",), "demo": ("pandas",)}
EXTRAS = {"onnx": "export", "onnx_ir": "export", **{m: extra for extra, ms in EXTRA_MODULES.items() for m in ms}}


def missing_extra(error: ImportError, what: str | None = None) -> AFTError | None:
    """The AFTError naming `pip install "hf-aft[EXTRA]"` for an import that failed on an optional module (the error's
    `name`; without one, a module named in the message, as transformers' ImportError for gguf names it); None when
    the module is not an optional one. `what` says what needed it (e.g. "hf-aft export")."""
    names = [error.name] if getattr(error, "name", None) else re.findall(r"[A-Za-z_]\w*", str(error))
    module = next((name.split(".")[0] for name in names if name.split(".")[0] in EXTRAS), None)
    if module is None:
        return None
    missing = isinstance(error, ModuleNotFoundError) and error.name == module  # not a submodule of another version
    state = "is not installed" if missing else f"did not import ({one_line(error)})"
    needs = f" ({what} needs it)" if what else ""
    extra = EXTRAS[module]
    return AFTError(f"{module} {state}{needs}: pip install \"hf-aft[{extra}]\", the optional {extra} extra.")


def require_extra(extra: str, what: str) -> None:
    """Import each module of an extra up front: one missing is one line naming the pip install before any work
    starts, not a ModuleNotFoundError from a library that imports it lazily mid-way (torch's ONNX exporter)."""
    for module in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise (missing_extra(error, what) or AFTError(f"{what}: {one_line(error)}")) from error


_WARNED: set[str] = set()


def warn_once(logger, message: str) -> None:
    """A one-line warning, said once per process (a teacher made for each split, a student tokenizing two splits)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


@contextlib.contextmanager
def held_back(name: str):
    """Hold back what logger `name` and its children say during the block (yields the list of records): the caller
    says them after (`logger.handle`) once it knows the result stands, or drops them with the refusal that replaces
    them, so a refusal stays one line."""
    logger, records = logging.getLogger(name), []
    holder = logging.Handler()
    holder.emit = records.append
    saved = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [holder], False
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = saved


@contextlib.contextmanager
def quieted(*loggers: str, level: int = logging.ERROR):
    """Raise these loggers (`""`: the root logger) to `level` for the block only: advice from a library that does not
    apply (onnxruntime's quantizer telling to pre-process for static quantization, torch's exporter listing torchvision
    ops it skips) would otherwise read as a problem with the run. The levels are restored after, whatever happens."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in saved:
            logger.setLevel(old)
