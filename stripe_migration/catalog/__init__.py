"""The catalogue migration: CMS rows validated, planned, applied to Stripe, verified, reported."""

import warnings

import dagster as dg

# The catalogue's assets use a single-run backfill policy (every bucket of a backfill in one
# run), a parameter Dagster marks beta; its warning, once per asset, would greet every
# `dagster dev` and command. Dagster's own warnings stay on.
warnings.filterwarnings(
    "ignore", message="Parameter `backfill_policy` of function", category=dg.BetaWarning
)
