"""The Dagster resources and what they are built from: Stripe (stripe/), Supabase (supabase/), the
Stripe rate limiter, redaction of secrets, the events database and the catalogue's IO manager."""
