"""The errors a Stripe call raises: ours, each also an instance of stripe-python's own class when
it came from Stripe, with every string redacted, and picklable for Dagster's step failures."""

from __future__ import annotations

import threading
from typing import Any

import stripe

from stripe_migration.resources.redaction import redact


class StripeApiError(Exception):
    """A Stripe call failed (after its retries, when it was worth retrying).

    ``str()`` is a redacted message naming the endpoint, HTTP status, Stripe error type/code and
    param. An error that came back from Stripe is also an instance of stripe-python's own class
    (``stripe.InvalidRequestError``, ``stripe.APIConnectionError``...), with its ``code``,
    ``param``, ``user_message`` and ``error`` (redacted), so either kind of ``except`` catches it.
    """

    endpoint: str
    http_status: int | None
    error_type: str | None
    code: str | None
    param: str | None
    request_id: str | None
    retryable: bool
    attempts: int

    #: The attributes a pickled error keeps (subclasses add theirs).
    _FIELDS: tuple[str, ...] = (
        "endpoint",
        "http_status",
        "error_type",
        "code",
        "param",
        "request_id",
        "retryable",
        "attempts",
    )

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        http_status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        Exception.__init__(self, redact(message))
        self._set(
            redact(message),
            endpoint=endpoint,
            http_status=http_status,
            error_type=error_type,
            code=code,
            param=param,
            request_id=request_id,
            retryable=retryable,
            attempts=attempts,
        )

    def _set(self, text: str, **fields: Any) -> None:
        self._text = text
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The mixed classes of from_stripe are made at run time and cannot be pickled by name;
        # a pickled error comes back as the plain class of ours it was made from.
        plain = next(
            c
            for c in type(self).__mro__
            if issubclass(c, StripeApiError) and "_mixed" not in vars(c)
        )
        fields = {name: getattr(self, name, None) for name in plain._FIELDS}
        return (_restore_error, (plain, self._text, fields))

    @classmethod
    def from_stripe(cls, err: stripe.StripeError, message: str, **fields: Any) -> StripeApiError:
        """Wrap ``err`` in a class that is both ``cls`` and ``type(err)``, with every string
        stripe-python kept (message, body, error object) redacted."""
        mixed = _mixed_class(cls, type(err))
        wrapped = mixed.__new__(mixed)
        wrapped.__dict__.update(err.__dict__)
        Exception.__init__(wrapped, redact(message))
        wrapped._message = redact(err._message) if err._message else err._message
        wrapped.http_body = redact(err.http_body) if err.http_body else err.http_body
        wrapped.json_body = _redact_json(err.json_body)
        wrapped.error = wrapped._construct_error_object()
        wrapped._set(redact(message), **fields)
        return wrapped


def _restore_error(cls: type[StripeApiError], text: str, fields: dict[str, Any]) -> StripeApiError:
    return cls(text, **fields)


_mixed_classes: dict[tuple[type, type], type] = {}
_mixed_lock = threading.Lock()


def _mixed_class(ours: type[StripeApiError], theirs: type[stripe.StripeError]) -> type:
    with _mixed_lock:
        mixed = _mixed_classes.get((ours, theirs))
        if mixed is None:
            mixed = type(theirs.__name__, (ours, theirs), {"__module__": __name__, "_mixed": True})
            _mixed_classes[(ours, theirs)] = mixed
        return mixed


def _redact_json(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


class StripeAuthError(StripeApiError):
    """Stripe refused the key (401). Stops the run: no call can succeed with this key. Also a
    ``stripe.AuthenticationError`` when it came from Stripe."""


class IdempotentReplayedError(StripeApiError):
    """Stripe answered with the saved failure of this idempotency key (``Idempotent-Replayed:
    true``): the key's first request failed after the endpoint began executing, and Stripe gives
    that same status and body to every request with the key for 24 hours. Retrying with the same
    key is pointless, so the call stops after the one request that got the replay.

    The failed first request may or may not have written something (a 500 can come after the
    commit), so a caller that must get the write done checks Stripe's actual state (retrieve or
    list what the write would have made) and only then sends the write again under a new key.

    Attributes, besides :class:`StripeApiError`'s:

    - ``http_status``: the saved status (e.g. 500, or 400 for a saved business error);
    - ``code`` / ``error_type``: the saved error's code (may be None) and type (``api_error``...);
    - ``error_message``: the saved error's message (redacted), or None;
    - ``idempotency_key``: the key that replays it (redacted like every string here);
    - ``request_id``: the ``Request-Id`` of the answer (the emulator's replays send the first
      request's; quote it to Stripe's support).

    Also an instance of stripe-python's class for the saved status (``stripe.APIError`` for a
    500, ``stripe.InvalidRequestError`` for a 400...), like every error from Stripe; catch it
    before those: ``except IdempotentReplayedError as err: ...``. Picklable (as this class).
    """

    idempotency_key: str
    error_message: str | None

    _FIELDS = (*StripeApiError._FIELDS, "idempotency_key", "error_message")

    def __init__(
        self,
        message: str,
        *,
        idempotency_key: str = "",
        error_message: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, **fields)
        self.idempotency_key = redact(idempotency_key)
        self.error_message = redact(error_message) if error_message else error_message


class LiveModeRefused(StripeApiError):
    """A write with a live-mode key while ``allow_live`` is off; nothing was sent. Not a
    stripe-python error (there was no request): treat it as fatal for the run."""
