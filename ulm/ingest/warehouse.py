"""Opening the DuckDB warehouse and creating the ``raw`` schema (raw tables, quarantine, audit, registry)."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb

from ulm import contract
from ulm.errors import UlmError
from ulm.ingest.validate import key_hash_sql

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
  quarantine_id VARCHAR PRIMARY KEY,
  table_name VARCHAR NOT NULL,
  original_row JSON,
  reason_code VARCHAR NOT NULL,
  reason_detail VARCHAR,
  load_id VARCHAR NOT NULL,
  source_file VARCHAR,
  quarantined_at TIMESTAMP NOT NULL,
  released_at TIMESTAMP,
  released_load_id VARCHAR
)"""

LOAD_AUDIT_DDL = """
CREATE TABLE IF NOT EXISTS raw.load_audit (
  load_id VARCHAR NOT NULL,
  table_name VARCHAR NOT NULL,
  source_file VARCHAR,
  file_sha256 VARCHAR,
  rows_read BIGINT,
  rows_accepted BIGINT,
  rows_quarantined BIGINT,
  rows_duplicate BIGINT,
  rows_released BIGINT,
  status VARCHAR NOT NULL,
  message VARCHAR,
  started_at TIMESTAMP,
  finished_at TIMESTAMP
)"""

INGESTED_FILES_DDL = """
CREATE TABLE IF NOT EXISTS raw._ingested_files (
  table_name VARCHAR NOT NULL,
  file_sha256 VARCHAR NOT NULL,
  source_file VARCHAR,
  load_id VARCHAR NOT NULL,
  ingested_at TIMESTAMP NOT NULL,
  PRIMARY KEY (table_name, file_sha256)
)"""


def open_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the warehouse; a lock held by another process is a one-line UlmError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        msg = str(exc)
        if "lock" not in msg.lower():
            raise UlmError(f"warehouse {path}: cannot open: {msg.splitlines()[0]}") from None
        pid = re.search(r"PID (\d+)", msg)
        who = f"pid {pid.group(1)}" if pid else "pid unknown"
        raise UlmError(
            f"warehouse {path} is in use by another process ({who}); wait for it to finish"
        ) from None
    con.execute("SET TimeZone = 'UTC'")
    return con


def key_index(table: str) -> str:
    """Name of the key-hash index of a raw table (one UBIGINT per loaded row)."""
    return f"raw._keys_{table}"


def _ensure_key_index(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Create ``raw._keys_<table>`` (backfilled from ``raw.<table>`` the first time).

    Duplicate detection probes this narrow integer column instead of scanning every key string of a
    large raw table; only on a hit are the raw rows themselves read. Rows deleted from raw (erasure)
    leave stale hashes behind, which only cost a raw lookup that finds nothing.
    """
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = ?", [f"_keys_{table}"]
    ).fetchone()[0]
    if not exists:
        con.execute(f"CREATE TABLE {key_index(table)} (key_hash UBIGINT NOT NULL)")
        con.execute(f"INSERT INTO {key_index(table)} SELECT {key_hash_sql(contract.TABLES[table])} FROM raw.{table}")


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``raw`` with one table per landing table plus quarantine, load audit and file registry."""
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for name in contract.TABLES:
        con.execute(contract.raw_ddl(name))
        _ensure_key_index(con, name)
    con.execute(QUARANTINE_DDL)
    con.execute(LOAD_AUDIT_DDL)
    con.execute(INGESTED_FILES_DDL)
