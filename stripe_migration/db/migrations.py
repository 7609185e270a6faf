"""A small runner for the versioned SQL migrations in ``sql/``.

Each version ``X.Y.Z`` is a pair of files, ``X.Y.Z_<name>.sql`` and ``X.Y.Z_<name>.rollback.sql``.
Applied versions are recorded in ``schema_migrations`` (version, checksum, executed_at). Every
migration runs in its own transaction under an advisory lock, so two runners never interleave, and
a migration whose file changed after it was applied is refused before anything runs.

yoyo-migrations was considered: it keeps its own bookkeeping tables and file naming, and the
schema here wants a ``schema_migrations`` table with checksums, so the runner stays our own (~150
lines).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from stripe_migration.db.urls import libpq_url

_FILE = re.compile(r"^(?P<version>\d+\.\d+\.\d+)_(?P<name>[a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every runner of this project.
_ADVISORY_LOCK_KEY = 0x5354_5250  # "STRP"


class MigrationError(RuntimeError):
    """A migration cannot be applied or rolled back; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    """One schema version: its upgrade and rollback scripts."""

    version: str
    name: str
    upgrade_path: Path
    rollback_path: Path

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.upgrade_path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class VersionStatus:
    """Whether one version is applied, and if so when and with which checksum."""

    version: str
    name: str
    applied: bool
    executed_at: datetime | None
    checksum_matches: bool | None


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of a dotted version string (``"1.10.0"`` sorts after ``"1.9.0"``)."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise MigrationError(f"not a schema version: {version!r} (expected X.Y.Z)") from None


def sql_dir() -> Path:
    """The folder holding the migrations: ``sql/`` in a checkout, ``_sql`` inside a wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_sql", package.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise MigrationError(f"no sql/ folder found next to {package}")


def discover(directory: Path | None = None) -> list[Migration]:
    """Every migration in ``directory`` (default :func:`sql_dir`), oldest first."""
    directory = directory or sql_dir()
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        if path.name.endswith(".rollback.sql"):
            continue
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named X.Y.Z_name.sql")
        rollback = path.with_name(path.name.removesuffix(".sql") + ".rollback.sql")
        if not rollback.exists():
            raise MigrationError(f"{path.name} has no rollback file {rollback.name}")
        migrations.append(
            Migration(match["version"], match["name"], upgrade_path=path, rollback_path=rollback)
        )
    migrations.sort(key=lambda m: m.key)
    return migrations


def latest_version(directory: Path | None = None) -> str:
    """The newest version in ``directory``."""
    return discover(directory)[-1].version


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version      text PRIMARY KEY,
    checksum     text NOT NULL,
    executed_at  timestamptz NOT NULL DEFAULT now()
)
"""


def _applied(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    conn.execute(_BOOKKEEPING)
    rows = conn.execute("SELECT version, checksum, executed_at FROM schema_migrations").fetchall()
    return {version: (checksum, executed_at) for version, checksum, executed_at in rows}


def _lock(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))


def _refuse_changed(migrations: list[Migration], applied: dict[str, tuple[str, datetime]]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded and recorded[0] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version} ({migration.upgrade_path.name}) changed after it "
                f"was applied: recorded checksum {recorded[0][:12]}, file now {migration.checksum[:12]}. "
                "Restore the file as it was and put the change in a new migration."
            )


def _refuse_unknown(to: str, target: tuple[int, ...], migrations: list[Migration]) -> None:
    """Raise :class:`MigrationError` unless ``target``, the key of version ``to``, is known."""
    if all(m.key != target for m in migrations):
        raise MigrationError(
            f"unknown schema version {to}; known: {[m.version for m in migrations]}"
        )


def _applied_unchanged(
    conn: psycopg.Connection, migrations: list[Migration]
) -> dict[str, tuple[str, datetime]]:
    """The applied versions, read under the migration lock, once no applied migration's file has
    changed since (else :class:`MigrationError`)."""
    with conn.transaction():
        _lock(conn)
        applied = _applied(conn)
        _refuse_changed(migrations, applied)
    return applied


def current_version(database_url: str) -> str | None:
    """The newest applied version of the database, or None for an empty one."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        applied = _applied(conn)
    return max(applied, key=version_key) if applied else None


def upgrade(database_url: str, to: str | None = None, directory: Path | None = None) -> list[str]:
    """Apply every pending migration up to ``to`` (default: the latest). Return the versions applied."""
    migrations = discover(directory)
    target = version_key(to) if to else migrations[-1].key
    if to:
        _refuse_unknown(to, target, migrations)
    done: list[str] = []
    with psycopg.connect(libpq_url(database_url)) as conn:
        applied = _applied_unchanged(conn, migrations)
        for migration in migrations:
            if migration.key > target or migration.version in applied:
                continue
            with conn.transaction():
                _lock(conn)
                if migration.version in _applied(conn):  # another runner got there first
                    continue
                conn.execute(migration.upgrade_path.read_text())
                conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                    (migration.version, migration.checksum),
                )
            done.append(migration.version)
    return done


def downgrade(database_url: str, to: str, directory: Path | None = None) -> list[str]:
    """Roll back every applied migration newer than ``to`` (``"0"`` for an empty schema), newest first.

    Return the versions rolled back.
    """
    migrations = discover(directory)
    target = (0,) if to in ("0", "0.0.0", "base") else version_key(to)
    if target != (0,):
        _refuse_unknown(to, target, migrations)
    done: list[str] = []
    with psycopg.connect(libpq_url(database_url)) as conn:
        applied = _applied_unchanged(conn, migrations)
        for migration in reversed(migrations):
            if migration.key <= target or migration.version not in applied:
                continue
            with conn.transaction():
                _lock(conn)
                conn.execute(migration.rollback_path.read_text())
                conn.execute(
                    "DELETE FROM schema_migrations WHERE version = %s", (migration.version,)
                )
            done.append(migration.version)
    return done


def status(database_url: str, directory: Path | None = None) -> list[VersionStatus]:
    """Every known version with whether it is applied, when, and whether its file is unchanged."""
    migrations = discover(directory)
    with psycopg.connect(libpq_url(database_url)) as conn:
        applied = _applied(conn)
    return [
        VersionStatus(
            version=m.version,
            name=m.name,
            applied=m.version in applied,
            executed_at=applied[m.version][1] if m.version in applied else None,
            checksum_matches=(applied[m.version][0] == m.checksum)
            if m.version in applied
            else None,
        )
        for m in migrations
    ]
