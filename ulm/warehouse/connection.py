"""Connections to the warehouse file and the transaction helper."""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ulm.core.errors import UlmError
from ulm.core.settings import settings
from ulm.warehouse.schemas import AUDIT, AUDIT_PREFIX, LAYERS, ML, PUBLISHED, RAW

log = logging.getLogger("ulm.warehouse")

# DuckDB names a database's catalog after its file name (up to the first dot, case-insensitively), so a file
# named like one of these schemas makes every unqualified ``<schema>.<table>`` reference ambiguous.
SCHEMA_NAMES = frozenset({RAW, AUDIT, ML, PUBLISHED, *LAYERS, *(AUDIT_PREFIX + layer for layer in LAYERS)})


def _check_file_name(path: Path) -> None:
    """UlmError when the warehouse file's catalog name (its name up to the first dot) is a schema name."""
    catalog = path.name.split(".")[0]
    if catalog.lower() in SCHEMA_NAMES:
        raise UlmError(f"warehouse {path}: the file name {catalog!r} is also a schema name; "
                       f"name the file e.g. warehouse.duckdb")


def _friendly(path: Path, exc: duckdb.Error) -> UlmError:
    msg = str(exc)
    if "lock" not in msg.lower():
        return UlmError(f"warehouse {path}: cannot open: {msg.splitlines()[0]}")
    pid = re.search(r"PID (\d+)", msg)
    who = f"pid {pid.group(1)}" if pid else "pid unknown"
    return UlmError(f"warehouse {path} is in use by another process ({who}); wait for it to finish")


def _configure(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """UTC, and the memory limit of every warehouse connection (ULM_DUCKDB_MEMORY_LIMIT, the same as dbt's):
    DuckDB's own default is 80% of RAM, too close to the machine's size for a 100M-event build to stay bounded."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{settings().duckdb_memory_limit}'")
    return con


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open the warehouse read-write (creating it); a lock held by another process is a one-line UlmError."""
    path = Path(path)
    _check_file_name(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        raise _friendly(path, exc) from None
    return _configure(con)


def connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """Open an existing warehouse read-only (UlmError when it does not exist or a writer holds it)."""
    path = Path(path)
    _check_file_name(path)
    if not path.exists():
        raise UlmError(f"warehouse {path} does not exist; run `ulm ingest` / `ulm run` first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise _friendly(path, exc) from None
    return _configure(con)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN; COMMIT when the block ends, ROLLBACK (and re-raise) when it raises, even on KeyboardInterrupt.

    The error that ended the block is what propagates: a ROLLBACK that fails too (DuckDB already aborted the
    transaction, or the database was invalidated by an I/O error) is logged, never raised in its place.
    A failing COMMIT is rolled back the same way and re-raised.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        _rollback_quietly(con)
        raise
    try:
        con.execute("COMMIT")
    except BaseException:
        _rollback_quietly(con)
        raise


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as exc:  # no transaction left to roll back; the caller raises the original error
        log.debug("rollback failed: %s", (str(exc).splitlines() or [type(exc).__name__])[0])


def quote(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def relations(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, str]:
    """{name: 'BASE TABLE' | 'VIEW'} of one schema."""
    rows = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
        [schema]).fetchall()
    return dict(rows)


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, name]).fetchone()[0])
