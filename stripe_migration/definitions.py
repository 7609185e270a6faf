"""Assembles the Dagster definitions of stripe_migration, and nothing else."""

import dagster as dg

from stripe_migration.catalog import assets as catalog_assets
from stripe_migration.catalog import checks as catalog_checks
from stripe_migration.catalog.jobs import (
    audit_catalog,
    migrate_catalog,
    plan_catalog,
    preflight,
    rollback_catalog,
)
from stripe_migration.catalog.schedules import catalog_audit_daily
from stripe_migration.catalog.sensors import catalog_sync_sensor
from stripe_migration.events import assets as events_assets
from stripe_migration.events import checks as events_checks
from stripe_migration.events.jobs import (
    archive_stripe_events,
    fill_stripe_event_gaps,
    process_stripe_events,
)
from stripe_migration.events.policy import event_policy_from_env
from stripe_migration.events.schedules import stripe_event_gaps_hourly, stripe_events_archive_daily
from stripe_migration.events.sensors import stripe_events_sensor
from stripe_migration.resources.environment import (
    stripe_resource_from_env,
    supabase_resource_from_env,
)
from stripe_migration.resources.events_db import events_db_resource_from_env
from stripe_migration.resources.pickle_io_manager import PartitionRangePickleIOManager

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([catalog_assets, events_assets]),
    asset_checks=dg.load_asset_checks_from_modules([catalog_checks, events_checks]),
    jobs=[
        migrate_catalog,
        plan_catalog,
        audit_catalog,
        rollback_catalog,
        preflight,
        process_stripe_events,
        archive_stripe_events,
        fill_stripe_event_gaps,
    ],
    sensors=[catalog_sync_sensor, stripe_events_sensor],
    schedules=[catalog_audit_daily, stripe_events_archive_daily, stripe_event_gaps_hourly],
    resources={
        "stripe": stripe_resource_from_env(),
        "supabase": supabase_resource_from_env(),
        "events_db": events_db_resource_from_env(),
        "event_policy": event_policy_from_env(),
        "catalog_io_manager": PartitionRangePickleIOManager(),
    },
    # One process per run: the steps run one after another, and Stripe calls already run on
    # threads inside their step; a process per step would only cost memory on small machines.
    executor=dg.in_process_executor,
)
