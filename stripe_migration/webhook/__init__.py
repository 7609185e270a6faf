"""The ASGI receiver for Stripe webhooks: verifies signatures and stores events in ``stripe_events``.

It never processes an event itself; :mod:`stripe_migration.events.processing` does that later.
"""
