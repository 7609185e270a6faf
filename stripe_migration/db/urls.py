"""PostgreSQL connection URLs, normalised for the two drivers the project uses.

Dagster's PostgreSQL storage is written for psycopg2. SQLAlchemy 2.1 maps a plain ``postgresql://``
URL to psycopg 3, which Dagster's storage does not support, so every URL handed to Dagster goes
through :func:`dagster_storage_url`. Our own code (the migration runner, the gateway, the receiver)
uses psycopg 3 directly and wants the libpq form from :func:`libpq_url`.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^(postgres(?:ql)?)(\+[a-z0-9_]+)?://", re.IGNORECASE)


def _split_scheme(url: str) -> tuple[str, str]:
    match = _SCHEME.match(url.strip())
    if not match:
        raise ValueError(
            "not a PostgreSQL URL: expected postgresql://user:password@host:port/database"
        )
    return match.group(0), url.strip()[match.end() :]


def dagster_storage_url(url: str) -> str:
    """Return ``url`` with the ``postgresql+psycopg2://`` scheme that Dagster's storage needs."""
    _, rest = _split_scheme(url)
    return f"postgresql+psycopg2://{rest}"


def libpq_url(url: str) -> str:
    """Return ``url`` as libpq (and psycopg 3) accept it: ``postgresql://`` with no driver suffix."""
    _, rest = _split_scheme(url)
    return f"postgresql://{rest}"


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
