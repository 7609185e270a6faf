"""The base of the sandbox servers' errors: an HTTP status, a message and response headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class HttpError(Exception):
    """A request a sandbox server answers with an error: its ``status``, ``message`` and extra
    response ``headers``; each server's subclass adds its own fields and renders :meth:`body`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        raise NotImplementedError
