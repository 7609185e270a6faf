"""A local, stateful emulator of the parts of Stripe's API this project uses.

The official ``stripe`` client talks to it over real HTTP
(``stripe.StripeClient(key, base_addresses={"api": url})``). It keeps products, prices and events
in memory, checks requests against Stripe's OpenAPI description, and reproduces Stripe's
authentication, idempotency keys (first results saved and replayed, failures included, once
execution began), rate limits, search lag and signed webhooks, plus injectable latency and faults
(random, or scripted for one request, before execution, after it or after the commit). See
:mod:`.pipeline` for the request pipeline, :mod:`.app` for the control endpoints, :mod:`.faults`
for the faults.

**API version.** It models Stripe API version ``2026-08-26.dahlia``, the ``info.version`` of the
OpenAPI description its objects and parameter checks come from (``data/stripe_api_subset.json``),
which is also the emulated account's default version. It accepts that version and
``2026-10-28.endive`` (the one stripe-python 16.1 pins and sends) in ``Stripe-Version``, names the
version in every response's ``Stripe-Version`` header, and refuses any other with Stripe's 400
``Invalid Stripe API version: <v>``; see :mod:`.versions`.

**Bursts.** Each rate limit (account, endpoint, search) is a token bucket that holds
``rate_burst_s`` seconds of its rate, 1.0 s by default: a client idle for a second may send one
second's worth of requests at once (25 to one endpoint at the default 25/s), then no faster than
the rate; see :mod:`.limits`.
"""

from .app import create_app
from .config import DEFAULT_SECRET_KEY, DEFAULT_WEBHOOK_SECRET, EmulatorConfig
from .control import EmulatorControl
from .server import EmulatorProcess, start_emulator
from .webhooks import sign

__all__ = [
    "DEFAULT_SECRET_KEY",
    "DEFAULT_WEBHOOK_SECRET",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorProcess",
    "create_app",
    "sign",
    "start_emulator",
]
