"""Secrets out of every text we show: the configured secret values themselves, and anything shaped
like a Stripe key, a webhook secret, a Supabase secret key, a bearer token or a password.

The one place the project redacts: the Stripe errors, stripe-python's logger (through
:func:`install_stripe_log_filter`) and the events' error messages all go through :func:`redact`.

Two layers, because either alone misses something:

- **Exact values.** A resource registers the secret it was configured with
  (:func:`register_secret`) before it sends anything, so that value is replaced wherever it
  appears, whatever its shape (a Supabase service-role key is a JWT or ``sb_secret_...``; a
  webhook secret may be anything).
- **Patterns.** Stripe's key shapes (``sk_``/``rk_``/``pk_`` + ``test_``/``live_``, ``whsec_``),
  including their ``-`` and ``_`` (``secrets.token_urlsafe`` makes both) and Stripe's own masked
  form (``sk_test_****1234``), so a key never configured here (a wrong one in a message) is
  hidden too; plus ``Bearer``/``Basic`` credentials, ``password=...`` and a password in a URL.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

#: Values shorter than this are not registered: replacing them would mangle ordinary text.
_MIN_SECRET_CHARS = 8

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*_-]+"), MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9*+/=_-]+"), MASK),
    (re.compile(r"\bsb_secret_[A-Za-z0-9*_-]+"), MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {MASK}"),
    (re.compile(r"(?i)\b(password|passwd|apikey|api_key|secret)(\s*[=:]\s*)\S+"), rf"\1\2{MASK}"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]*@"), rf"\1{MASK}@"),
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Redact ``value`` itself, exactly, from every text :func:`redact` sees from now on (in this
    process). Resources call it with their configured keys when they build their clients."""
    value = value.strip()
    if len(value) >= _MIN_SECRET_CHARS:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and every secret-shaped string replaced by ``***``."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)  # a longer secret may contain a shorter
    for secret in known:
        text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _RedactingFilter(logging.Filter):
    """Redacts secrets from the records of stripe-python's logger (it logs URLs and bodies)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_filter_lock = threading.Lock()


def install_stripe_log_filter() -> None:
    """Put the redacting filter on stripe-python's ``stripe`` logger (once per process)."""
    with _filter_lock:
        stripe_logger = logging.getLogger("stripe")
        if not any(isinstance(f, _RedactingFilter) for f in stripe_logger.filters):
            stripe_logger.addFilter(_RedactingFilter())
