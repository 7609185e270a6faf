"""A small client for the emulator's ``/_emulator/*`` control endpoints."""

from __future__ import annotations

from typing import Any

import httpx


class EmulatorControl:
    """Read stats, reset state, change settings and list stored objects of a running emulator.

    >>> control = EmulatorControl("http://127.0.0.1:8765")  # doctest: +SKIP
    >>> control.configure(latency_ms=100, fault_503_rate=0.1)  # doctest: +SKIP
    >>> control.fail_next("POST", "/v1/prices", status=500, phase="after_commit")  # doctest: +SKIP
    """

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        # trust_env=False: the emulator is on loopback, never behind a proxy from the environment.
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    def __repr__(self) -> str:
        return f"EmulatorControl({self.url!r})"

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            detail = response.text[:500]
            raise RuntimeError(f"{method} {path} failed with {response.status_code}: {detail}")
        return response.json()

    def health(self) -> bool:
        """Whether the emulator answers."""
        try:
            return self._client.get("/_emulator/health").status_code == 200
        except httpx.HTTPError:
            return False

    def stats(self) -> dict[str, Any]:
        """Requests by endpoint and status, 429s, faults, peak in flight, webhook deliveries."""
        return self._json("GET", "/_emulator/stats")

    def reset(self, keep_config: bool = False) -> None:
        """Clear objects, events, idempotency keys, scripted faults and stats; restore the
        startup config."""
        self._json("POST", "/_emulator/reset", json={"keep_config": keep_config})

    def config(self) -> dict[str, Any]:
        """The current settings (keys redacted)."""
        return self._json("GET", "/_emulator/config")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings now, e.g. ``configure(global_rate_per_s=5, latency_ms=50)``."""
        return self._json("POST", "/_emulator/config", json=changes)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Every stored object of ``kind`` (product, price or event), oldest first."""
        return self._json("GET", f"/_emulator/objects/{kind}")

    def fail_next(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        phase: str,
        status: int = 500,
        count: int = 1,
        idempotency_key: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Make the next ``count`` requests matching ``method`` (None: any), ``path`` (concrete,
        ``/v1/prices/price_123``, or an operation's template, ``/v1/prices/{id}``) and/or
        ``idempotency_key`` fail with ``status`` in ``phase``: ``"before_execution"`` (nothing
        done or saved), ``"after_execution"`` (nothing done; the error is saved and replayed for
        the key) or ``"after_commit"`` (the write happened; the error is saved and replayed).
        Returns the armed fault (with its ``id``). See :mod:`.faults`."""
        spec: dict[str, Any] = {"phase": phase, "status": status, "count": count}
        for name, value in (
            ("method", method),
            ("path", path),
            ("idempotency_key", idempotency_key),
            ("code", code),
            ("message", message),
        ):
            if value is not None:
                spec[name] = value
        return self._json("POST", "/_emulator/faults", json=spec)

    def scripted_faults(self) -> list[dict[str, Any]]:
        """The scripted faults still armed (with the ``remaining`` hits of each), oldest first."""
        return self._json("GET", "/_emulator/faults")

    def clear_faults(self) -> None:
        """Disarm every scripted fault (a reset does too)."""
        self._json("DELETE", "/_emulator/faults")
