"""stripe_migration: move a Supabase product catalogue into Stripe, and keep Stripe webhook events healthy."""

__version__ = "0.1.0"
