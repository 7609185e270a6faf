"""The emulator's settings: keys, limits, latency, faults, search lag, idempotency and webhooks.

Every field can be changed while the emulator runs (``POST /_emulator/config`` or
:meth:`EmulatorControl.configure`). Rates are requests per second; ``None`` means "no limit".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .versions import API_VERSIONS, SPEC_API_VERSION

DEFAULT_SECRET_KEY = "sk_test_emulator_local"
DEFAULT_WEBHOOK_SECRET = "whsec_emulator_local"
_IDEMPOTENCY_MODES = ("wait", "conflict")
#: When an injected error happens, relative to the request's execution (see :mod:`.faults`).
FAULT_PHASES = ("before_execution", "after_execution", "after_commit")


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. Defaults follow Stripe's published sandbox limits.

    ``api_version``: the account's default API version, used for requests without a
    ``Stripe-Version`` header and named by every event; one of :data:`~.versions.API_VERSIONS`.

    Keys: a request must carry one of ``secret_keys`` as ``Authorization: Bearer <key>``. An
    ``sk_live_...`` key may be configured so callers can test their live-mode guards; objects are
    ``livemode: false`` whichever key created them (the emulator has one data set).

    Limits: ``global_rate_per_s`` for all requests (Stripe: 25/s sandbox, 100/s live),
    ``endpoint_rate_per_s`` for each operation such as ``"POST /v1/products"`` (overridable per
    operation in ``endpoint_rates_per_s``), ``search_rate_per_s`` for both search endpoints,
    ``max_in_flight`` concurrent requests. Over a limit is a 429 ``rate_limit`` error. Each rate is
    a token bucket holding ``rate_burst_s`` seconds of its rate (default 1.0: at 25/s, 25 requests
    at once from a full bucket, then 25 a second; never less than one request): see :mod:`.limits`.

    Faults (``fault_*_rate``, probabilities per request, limited to ``fault_operations`` if set):
    500 and 503 ``api_error``; a dropped connection (for POSTs, the fraction ``drop_after_commit``
    of drops happen after the object was stored); an answer held back ``slow_response_s``. ``seed``
    makes the draws repeatable. ``fault_phase`` says when the injected 500s and 503s happen:
    ``"before_execution"`` (nothing done, nothing saved under the idempotency key: a retry with
    the same key runs the request), ``"after_execution"`` (the operation began, wrote nothing, and
    the error is saved and replayed for the key) or ``"after_commit"`` (the write happened, then
    the error was saved and is replayed for the key); see :mod:`.faults`.

    ``search_lag_s``: how long after a write search sees it. ``idempotency_ttl_s``: how long
    idempotency keys are kept; ``idempotency_in_progress``: ``"wait"`` (a second request with a
    running key waits, then replays) or ``"conflict"`` (Stripe's 409). ``webhook_url``: where each
    new event is POSTed, signed with ``webhook_secret``.
    """

    secret_keys: tuple[str, ...] = (DEFAULT_SECRET_KEY,)
    account_id: str = "acct_1EmuLocalSandbox"
    api_version: str = SPEC_API_VERSION

    # Rate limits (token buckets holding ``rate * rate_burst_s`` tokens).
    global_rate_per_s: float | None = 25.0
    endpoint_rate_per_s: float | None = 25.0
    endpoint_rates_per_s: Mapping[str, float] = field(default_factory=dict)
    search_rate_per_s: float | None = 20.0
    rate_burst_s: float = 1.0
    max_in_flight: int | None = 1000

    # Simulated latency: fixed + uniform(-jitter, +jitter), never below zero.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0

    # Faults, each a probability per API request.
    fault_500_rate: float = 0.0
    fault_503_rate: float = 0.0
    fault_drop_rate: float = 0.0
    fault_slow_rate: float = 0.0
    drop_after_commit: float = 0.0
    slow_response_s: float = 30.0
    fault_operations: tuple[str, ...] = ()
    fault_phase: str = "before_execution"
    seed: int | None = None

    search_lag_s: float = 1.0

    idempotency_ttl_s: float = 24 * 3600.0
    idempotency_max_keys: int = 200_000
    idempotency_in_progress: str = "wait"

    webhook_url: str | None = None
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_max_attempts: int = 3
    webhook_retry_delay_s: float = 0.5
    webhook_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret_keys", tuple(self.secret_keys))
        object.__setattr__(self, "fault_operations", tuple(self.fault_operations))
        object.__setattr__(self, "endpoint_rates_per_s", dict(self.endpoint_rates_per_s))
        if not self.secret_keys or not all(
            isinstance(k, str) and k.strip() for k in self.secret_keys
        ):
            raise ValueError("secret_keys: give at least one non-empty key")
        for name in ("global_rate_per_s", "endpoint_rate_per_s", "search_rate_per_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be > 0 or None (no limit), got {value!r}")
        for op, rate in self.endpoint_rates_per_s.items():
            if rate is not None and rate <= 0:
                raise ValueError(f"endpoint_rates_per_s[{op!r}]: must be > 0, got {rate!r}")
        if self.api_version not in API_VERSIONS:
            raise ValueError(
                f"api_version: must be one of {API_VERSIONS}, got {self.api_version!r}"
            )
        if self.rate_burst_s <= 0:
            raise ValueError(f"rate_burst_s: must be > 0, got {self.rate_burst_s!r}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be >= 1 or None, got {self.max_in_flight!r}")
        for name in (
            "latency_ms",
            "latency_jitter_ms",
            "slow_response_s",
            "search_lag_s",
            "idempotency_ttl_s",
            "webhook_retry_delay_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in (
            "fault_500_rate",
            "fault_503_rate",
            "fault_drop_rate",
            "fault_slow_rate",
            "drop_after_commit",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be a probability in [0, 1], got {value!r}")
        total = (
            self.fault_500_rate + self.fault_503_rate + self.fault_drop_rate + self.fault_slow_rate
        )
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates: their sum must be <= 1, got {total:.3f}")
        if self.fault_phase not in FAULT_PHASES:
            raise ValueError(
                f"fault_phase: must be one of {FAULT_PHASES}, got {self.fault_phase!r}"
            )
        if self.idempotency_in_progress not in _IDEMPOTENCY_MODES:
            raise ValueError(
                f"idempotency_in_progress: must be one of {_IDEMPOTENCY_MODES}, "
                f"got {self.idempotency_in_progress!r}"
            )
        if self.idempotency_max_keys < 1:
            raise ValueError("idempotency_max_keys: must be >= 1")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts: must be >= 1")
        if self.webhook_timeout_s <= 0:
            raise ValueError("webhook_timeout_s: must be > 0")
        if self.webhook_url is not None and not self.webhook_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"webhook_url: must be an http(s) URL, got {self.webhook_url!r}")
        if not self.webhook_secret:
            raise ValueError("webhook_secret: must not be empty")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """Names of all settings."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Return a copy with ``changes`` applied; unknown names or bad values raise ValueError."""
        unknown = sorted(set(changes) - self.field_names())
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **dict(changes))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EmulatorConfig:
        """Build a config from a JSON-like mapping (unknown names raise ValueError)."""
        return cls().updated(values)

    def to_dict(self) -> dict[str, Any]:
        """All settings as JSON-ready values, secrets included (used to pass config to the child)."""
        out = dataclasses.asdict(self)
        out["secret_keys"] = list(self.secret_keys)
        out["fault_operations"] = list(self.fault_operations)
        return out

    def public_dict(self) -> dict[str, Any]:
        """All settings with keys and the webhook secret redacted, safe to print or log."""
        out = self.to_dict()
        out["secret_keys"] = [redact_key(k) for k in self.secret_keys]
        out["webhook_secret"] = redact_key(self.webhook_secret)
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.public_dict().items())
        return f"EmulatorConfig({shown})"


def redact_key(key: str) -> str:
    """Show a key the way Stripe does in error messages: its prefix and last four characters."""
    parts = key.split("_")
    if len(parts) > 2 and parts[1] in ("test", "live"):
        prefix = f"{parts[0]}_{parts[1]}_"
    elif len(parts) > 1:
        prefix = f"{parts[0]}_"
    else:
        prefix = ""
    tail = key[-4:] if len(key) >= 12 else ""
    return f"{prefix}****{tail}"
