"""Verification of Stripe's ``Stripe-Signature`` header.

Stripe signs ``f"{t}.{raw_body}"`` with HMAC-SHA256 under the endpoint secret and sends
``t=<unix time>,v1=<hex digest>[,v1=...][,v0=...]``. Several ``v1`` entries may come at once (Stripe
rolls its own keys), and we may hold several endpoint secrets at once (our rotation), so a body is
genuine when any ``v1`` matches under any secret. The scheme is implemented here on the raw bytes
rather than through ``stripe.WebhookSignature``, which decodes the body to ``str`` first and puts the
body and header into its exception; the result is the same digest.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

DEFAULT_TOLERANCE_S = 300
"""How old (or how far in the future) a signature timestamp may be, as Stripe's libraries default."""

_SCHEME = "v1"
_MAX_HEADER_CHARS = 8192


class SignatureError(ValueError):
    """The ``Stripe-Signature`` header is missing, malformed, stale, or matches no secret.

    The message never contains a secret, a signature or the body.
    """


def parse_secrets(value: str | Iterable[str]) -> tuple[str, ...]:
    """Return the endpoint secrets in ``value``: a comma-separated string or an iterable.

    Blank entries are dropped. Raise :class:`ValueError` if none is left.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    secrets = tuple(s.strip() for s in items if s and s.strip())
    if not secrets:
        raise ValueError(
            "no webhook secret given: set STRIPE_WEBHOOK_SECRET (comma-separated to rotate)"
        )
    return secrets


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex ``v1`` signature of ``body`` at ``timestamp`` under ``secret``."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | Iterable[str], timestamp: int | None = None) -> str:
    """Return a ``Stripe-Signature`` header for ``body``, as Stripe would send it.

    With several secrets the header carries one ``v1`` per secret. Used by tests, the bench and the
    demo to play Stripe's part.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return ",".join([f"t={ts}"] + [f"v1={compute_signature(s, ts, body)}" for s in secrets])


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """Split a ``Stripe-Signature`` header into its timestamp and its ``v1`` signatures.

    Raise :class:`SignatureError` when the header is missing, has no valid ``t`` or no ``v1``.
    """
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    if len(header) > _MAX_HEADER_CHARS:
        raise SignatureError("Stripe-Signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # ASCII only ("²".isdigit() is True), and short: int() refuses over 4300 digits.
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise SignatureError("Stripe-Signature header has a non-numeric timestamp")
            timestamp = int(value)
        elif key == _SCHEME and value:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("Stripe-Signature header has no timestamp (t=...)")
    if not signatures:
        raise SignatureError("Stripe-Signature header has no v1 signature")
    return timestamp, signatures


def verify(
    body: bytes,
    header: str | None,
    secrets: Iterable[str],
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check that ``body`` was signed by Stripe with one of ``secrets``, recently. Return ``t``.

    The signature is checked first (constant-time), then the timestamp, which must lie within
    ``tolerance_s`` of ``now`` on either side: a replayed old body is refused, and so is one dated in
    the future, which would otherwise stay replayable for longer than the tolerance.
    Raise :class:`SignatureError` otherwise.
    """
    timestamp, signatures = parse_header(header)
    secrets = tuple(secrets)
    if not secrets:
        raise ValueError("verify() needs at least one webhook secret")
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, timestamp, body)
        for candidate in signatures:
            # Keep looping after a match so the time taken does not depend on which one matched.
            # Bytes: compare_digest raises TypeError on str with non-ASCII characters.
            matched |= hmac.compare_digest(
                expected.encode(), candidate.encode("utf-8", "surrogatepass")
            )
    if not matched:
        raise SignatureError("no signature in the Stripe-Signature header matches the body")
    current = time.time() if now is None else now
    if tolerance_s and abs(current - timestamp) > tolerance_s:
        raise SignatureError(
            f"signature timestamp {timestamp} is outside the {tolerance_s} s tolerance "
            f"(now {int(current)})"
        )
    return timestamp


class SignatureVerifier:
    """Holds the endpoint secrets and verifies bodies against them; its repr hides the secrets."""

    __slots__ = ("_secrets", "tolerance_s")

    def __init__(self, secrets: str | Iterable[str], tolerance_s: int = DEFAULT_TOLERANCE_S):
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        self._secrets = parse_secrets(secrets)
        self.tolerance_s = tolerance_s

    @property
    def secret_count(self) -> int:
        """How many secrets are accepted (more than one while rotating)."""
        return len(self._secrets)

    def verify(self, body: bytes, header: str | None, now: float | None = None) -> int:
        """Verify ``body`` against ``header`` with every held secret; see :func:`verify`."""
        return verify(body, header, self._secrets, self.tolerance_s, now)

    def __repr__(self) -> str:
        return f"SignatureVerifier(secrets=<{len(self._secrets)} hidden>, tolerance_s={self.tolerance_s})"
