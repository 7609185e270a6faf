"""The code location loads, as the webserver and the daemon would load it, and quietly."""

import subprocess
import sys

import dagster as dg

from stripe_migration.definitions import defs


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


def test_loading_the_code_location_prints_no_warning() -> None:
    # What `dagster dev` does first: import the module and build the repository.
    loaded = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "import stripe_migration.definitions as d; d.defs.get_repository_def()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Warning" not in loaded.stderr, loaded.stderr
