"""The local stack: embedded PostgreSQL, a Supabase-compatible gateway and a Stripe emulator."""
