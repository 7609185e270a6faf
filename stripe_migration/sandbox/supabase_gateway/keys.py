"""Service role keys for the local gateway, shaped like Supabase's (an HS256 JWT)."""

from __future__ import annotations

import secrets
import time

import jwt

_TEN_YEARS_S = 10 * 365 * 24 * 3600


def make_service_role_key(secret: str | None = None) -> str:
    """A JWT with ``role: service_role`` signed by ``secret`` (a fresh random one by default).

    The gateway compares keys byte for byte; the JWT shape only keeps client code that inspects
    the key (as some Supabase tooling does) working as it would against a real project.
    """
    now = int(time.time())
    claims = {
        "iss": "supabase-local",
        "role": "service_role",
        "iat": now,
        "exp": now + _TEN_YEARS_S,
    }
    return jwt.encode(claims, secret or secrets.token_urlsafe(32), algorithm="HS256")
