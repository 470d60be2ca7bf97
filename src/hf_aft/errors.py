"""The one exception type users see: a one-line message that names the problem and the way out."""


class AFTError(ValueError):
    """Bad input to hf-aft. The CLI prints its message on one line, without a traceback (`HF_AFT_DEBUG=1` shows the
    traceback and the chain of causes: every AFTError raised from another error keeps it as `__cause__`)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what a one-line error
    quotes of the library error underneath."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


_WARNED: set[str] = set()


def warn_once(logger, message: str) -> None:
    """A one-line warning, said once per process (a teacher made for each split, a student tokenizing two splits)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)
