"""The catalogue migration: CMS rows validated, planned, applied to Stripe, verified, reported."""
