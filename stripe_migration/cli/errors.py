"""How a command fails: an exit status and one line on stderr, ``Error: <reason>``.

The reason is the first line of what went wrong; for a Dagster step, the innermost error of its
serialised failure.
"""

from __future__ import annotations

import re
from typing import Any

import click

#: Exit statuses besides 0 (success).
EXIT_RUN_FAILED = 1
EXIT_NOT_CONFIGURED = 2
EXIT_INTERRUPTED = 130


class CommandFailed(click.ClickException):
    """A one-line reason and an exit status (click prints ``Error: <reason>`` on stderr)."""

    def __init__(self, message: str, exit_code: int = EXIT_RUN_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_line(text: str) -> str:
    """The first line of ``text``, with the next one when the first ends with a colon."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def error_text(error: Any) -> str:
    """The innermost message of a serialised error (the user code's, not Dagster's wrapper),
    with the exception's class named without its module."""
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=\w+(?::|$))", "", first_line(error.message))
