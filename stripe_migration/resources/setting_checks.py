"""Checks of resource settings that may be given as a ``dg.EnvVar``: a value given directly is
checked when the resource is built, so a bad setting fails at load with a clear message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import field_validator


def checked_unless_env_var(field: str, check: Callable[[Any], Any]) -> Any:
    """A pydantic "before" validator of ``field`` that returns ``check(value)``. A ``dg.EnvVar``
    passes unchecked: Dagster resolves it when a run starts and validates the resolved value
    then, with the same check. Assign it in the class body: ``_check_x = checked_unless_env_var(...)``.
    """

    def validate(cls: type, value: Any) -> Any:
        return value if isinstance(value, dg.EnvVar) else check(value)

    return field_validator(field, mode="before")(classmethod(validate))


def required_text(value: Any, field: str, env_var: str) -> str:
    """``value`` when it is a non-blank string; else a ``ValueError`` naming ``field`` and the
    environment variable ``env_var`` to set (never the value itself, which may be a secret)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} is empty: set {env_var}")
    return value
