"""Assembles the Dagster definitions of stripe_migration, and nothing else."""

import dagster as dg

defs = dg.Definitions()
