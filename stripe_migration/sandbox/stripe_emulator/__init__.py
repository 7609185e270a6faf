"""A local, stateful emulator of the parts of Stripe's API this project uses.

The official ``stripe`` client talks to it over real HTTP
(``stripe.StripeClient(key, base_addresses={"api": url})``). It keeps products, prices and events
in memory, checks requests against Stripe's OpenAPI description, and reproduces Stripe's
authentication, idempotency keys (first results saved and replayed, failures included, once
execution began), rate limits, search lag and signed webhooks, plus injectable latency and faults
(random, or scripted for one request, before execution, after it or after the commit). See
:mod:`.pipeline` for the request pipeline, :mod:`.app` for the control endpoints, :mod:`.faults`
for the faults.
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
