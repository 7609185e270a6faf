"""The code location loads, as the webserver and the daemon would load it."""

import dagster as dg

from stripe_migration.definitions import defs


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)
