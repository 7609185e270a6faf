"""Pydantic fields for the resources' bounded numeric settings: a default, a bound, a description."""

from __future__ import annotations

from typing import Any

from pydantic import Field


def at_least_one(default: float, description: str) -> Any:
    """A setting of 1 or more (a count, a limit, a multiplier), ``default`` unless configured."""
    return Field(default=default, ge=1, description=description)


def positive(default: float, description: str) -> Any:
    """A setting above 0 (a rate, a number of seconds), ``default`` unless configured."""
    return Field(default=default, gt=0, description=description)


def rate_field(default: float, of_what: str) -> Any:
    """A request rate (above 0): the most requests per second ``of_what`` may make."""
    return positive(default, f"Most requests per second of {of_what}.")


def timeout_field(default: float, what: str) -> Any:
    """A timeout in seconds (above 0): how long to wait for ``what`` ("a response")."""
    return positive(default, f"Seconds to wait for {what}.")
