"""The Stripe webhook events: handlers, processing with recorded attempts, archival, gap filling."""
