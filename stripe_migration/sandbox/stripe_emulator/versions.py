"""The Stripe API versions the emulator answers to, and how a request's ``Stripe-Version`` is read.

Stripe runs each request at the version its ``Stripe-Version`` header names, or, without the
header, at the account's default version, and names that version in the response's
``Stripe-Version`` header (https://docs.stripe.com/api-versions, "How API versioning works";
https://docs.stripe.com/sdks/set-version: server-side SDKs send the version they are pinned to).
A version Stripe does not know is refused before anything runs: HTTP 400,
``{"error": {"type": "invalid_request_error", "message": "Invalid Stripe API version: <v>"}}``
(the message Stripe's API gives, e.g. for ``2019-2-19``: https://github.com/stripe/stripe-java/issues/682).

The emulator's objects and parameter checks come from one OpenAPI description,
:data:`SPEC_API_VERSION`'s. It also accepts :data:`STRIPE_PYTHON_API_VERSION`, the version the
installed stripe-python sends, and answers it with the same shapes: the products, prices, events
and account it emulates are read and written the same way at both. Any other version, older real
ones included (Stripe accepts those, with other shapes the emulator does not model), is refused
as Stripe refuses an unknown one.
"""

from __future__ import annotations

from .errors import ApiError

#: ``info.version`` of the OpenAPI description ``data/stripe_api_subset.json`` was cut from
#: (its ``source.api_version``); the default version of the emulated account.
SPEC_API_VERSION = "2026-08-26.dahlia"
#: ``stripe.api_version`` of stripe-python 16.1, the version it sends with every request.
STRIPE_PYTHON_API_VERSION = "2026-10-28.endive"
#: Every version the emulator accepts in ``Stripe-Version`` (and as the account's default).
API_VERSIONS = (SPEC_API_VERSION, STRIPE_PYTHON_API_VERSION)


def request_version(header: str | None, account_default: str) -> str:
    """The version a request runs at: its ``Stripe-Version`` header, or the account's default
    when the header is absent; a 400 ``invalid_request_error`` for a version not in
    :data:`API_VERSIONS`."""
    if header is None:
        return account_default
    if header not in API_VERSIONS:
        raise ApiError(400, f"Invalid Stripe API version: {header}")
    return header


def response_version(header: str | None, account_default: str) -> str:
    """The version a response names in its ``Stripe-Version`` header: the request's when the
    emulator knows it, otherwise (no header, or one refused) the account's default."""
    return header if header in API_VERSIONS else account_default
