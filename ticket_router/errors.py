"""Errors raised for bad user input.

The CLI prints an `InputError` as one line (no traceback): the message must name the file, column, row or
value at fault and, where it can, what was probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad user input (file, column, label, option); the message is shown to the user as is."""


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def first_line(error: BaseException) -> str:
    """The first line of the innermost cause: library errors often wrap the useful message several times."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
