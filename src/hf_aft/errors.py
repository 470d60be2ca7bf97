"""The one exception type users see: a one-line message that names the problem and the way out."""


class AFTError(ValueError):
    """Bad input to hf-aft. The CLI prints its message on one line, without a traceback."""
