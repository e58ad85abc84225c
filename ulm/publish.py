"""Write-audit-publish (SPEC §12) and the audience export (SPEC §10).

``publish`` replaces the published ``marts`` schema with the audited build in ``audit_marts`` inside ONE
DuckDB transaction: every published table is dropped and re-created from its audited twin (views are
materialized, since they would otherwise point into the audit schemas), tables that vanished from the build
are dropped, and a row goes to ``audit.publish_log``. Readers either see the previous marts or the new ones,
never a mix; on any error the transaction rolls back and the previous marts stay exactly as they were.

``export_audiences`` writes one Parquet and one CSV file per rule to ``data/exports/<as_of>/`` from
``marts.mart_interventions`` for the as-of day, holdout excluded. Files are written to a temporary folder
that then replaces the day's folder, so a re-run of the same day leaves exactly one consistent set.
"""
from __future__ import annotations

import logging
import shutil
import time
from datetime import date, datetime, timezone
from pathlib import Path

from ulm.config import data_dir
from ulm.errors import UlmError

log = logging.getLogger("ulm.publish")

PUBLISHED_SCHEMA = "marts"
AUDIT_PREFIX = "audit_"
INTERVENTIONS = "mart_interventions"

PUBLISH_LOG_DDL = """
CREATE TABLE IF NOT EXISTS audit.publish_log (
  run_id VARCHAR NOT NULL,
  as_of DATE NOT NULL,
  source_schema VARCHAR NOT NULL,
  target_schema VARCHAR NOT NULL,
  tables INTEGER NOT NULL,
  total_rows BIGINT NOT NULL,
  published_at TIMESTAMP NOT NULL
)"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _relations(con, schema: str) -> dict[str, str]:
    """{name: 'BASE TABLE' | 'VIEW'} of one schema."""
    rows = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
        [schema],
    ).fetchall()
    return dict(rows)


def _open(warehouse: Path):
    from ulm.ingest.warehouse import open_warehouse

    return open_warehouse(warehouse)


def publish(warehouse: Path, as_of: date, run_id: str, source_schema: str = AUDIT_PREFIX + PUBLISHED_SCHEMA,
            target_schema: str = PUBLISHED_SCHEMA) -> dict:
    """Atomically replace ``target_schema`` with the audited ``source_schema``; returns what was published."""
    t0 = time.perf_counter()
    con = _open(warehouse)
    try:
        source = _relations(con, source_schema)
        if not source:
            raise UlmError(f"warehouse {warehouse}: schema {source_schema} holds no tables; nothing to publish")
        con.execute("BEGIN TRANSACTION")
        try:
            counts = _swap(con, source, source_schema, target_schema)
            con.execute("CREATE SCHEMA IF NOT EXISTS audit")
            con.execute(PUBLISH_LOG_DDL)
            con.execute("INSERT INTO audit.publish_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [run_id, as_of, source_schema, target_schema, len(counts), sum(counts.values()),
                         datetime.now(timezone.utc).replace(tzinfo=None)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    seconds = round(time.perf_counter() - t0, 3)
    log.info("published %d tables (%d rows) from %s to %s in %.1fs", len(counts), sum(counts.values()),
             source_schema, target_schema, seconds)
    return {"tables": len(counts), "rows": sum(counts.values()), "seconds": seconds,
            "published": sorted(counts)}


def _swap(con, source: dict[str, str], source_schema: str, target_schema: str) -> dict[str, int]:
    """Inside the caller's transaction: target := copy of source (tables and materialized views)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(target_schema)}")
    for name, kind in _relations(con, target_schema).items():
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {_q(target_schema)}.{_q(name)}")
    counts: dict[str, int] = {}
    for name in source:
        con.execute(f"CREATE TABLE {_q(target_schema)}.{_q(name)} AS "
                    f"SELECT * FROM {_q(source_schema)}.{_q(name)}")
        counts[name] = con.execute(f"SELECT count(*) FROM {_q(target_schema)}.{_q(name)}").fetchone()[0]
    return counts


# ------------------------------------------------------------------------------------------ audience export

def exports_dir(as_of: date, root: Path | None = None) -> Path:
    return (root or data_dir() / "exports") / as_of.isoformat()


def export_audiences(warehouse: Path, as_of: date, out_root: Path | None = None,
                     schema: str = PUBLISHED_SCHEMA) -> dict:
    """Parquet + CSV per rule for ``as_of`` from ``<schema>.mart_interventions``, holdout excluded."""
    t0 = time.perf_counter()
    target = exports_dir(as_of, out_root)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = _open(warehouse)
    try:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", [schema, INTERVENTIONS]).fetchall()]
        if not columns:
            raise UlmError(f"warehouse {warehouse}: {schema}.{INTERVENTIONS} does not exist; publish first")
        date_col = _pick(columns, ("date", "audience_date", "as_of"), "the audience date")
        holdout_col = _pick(columns, ("is_holdout", "holdout", "in_holdout"), "the holdout flag")
        base = (f"FROM {_q(schema)}.{INTERVENTIONS} WHERE {_q(date_col)} = DATE '{as_of.isoformat()}' "
                f"AND NOT coalesce({_q(holdout_col)}, false)")
        keep = ", ".join(_q(c) for c in columns if c != holdout_col)
        rules = {}
        for (rule,) in con.execute(f"SELECT DISTINCT rule_id {base} ORDER BY 1").fetchall():
            where = f"{base} AND rule_id = '{str(rule).replace(chr(39), chr(39) * 2)}'"
            rel = f"(SELECT {keep} {where} ORDER BY person_id)"
            stem = str(tmp / _safe(rule)).replace("'", "''")
            con.execute(f"COPY {rel} TO '{stem}.parquet' (FORMAT parquet)")
            con.execute(f"COPY {rel} TO '{stem}.csv' (FORMAT csv, HEADER true)")
            rules[rule] = con.execute(f"SELECT count(*) {where}").fetchone()[0]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("exported %d audiences (%d persons) to %s in %.1fs", len(rules), sum(rules.values()), target, seconds)
    return {"dir": str(target), "rules": rules, "persons": sum(rules.values()), "seconds": seconds}


def _pick(columns: list[str], candidates: tuple[str, ...], what: str) -> str:
    for c in candidates:
        if c in columns:
            return c
    raise UlmError(f"{INTERVENTIONS}: column {candidates[0]}: no column for {what} (one of {', '.join(candidates)})")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


# ------------------------------------------------------------------------------------------ verification

def table_checksums(warehouse: Path, schema: str = PUBLISHED_SCHEMA,
                    slices: dict[str, str] | None = None) -> dict[str, str]:
    """Order-independent checksum of every table of ``schema`` (read-only), to compare builds and publishes.

    Floating-point columns are rounded to 6 decimals first: parallel aggregation may change the last bits of
    a double between two otherwise identical builds. ``slices`` restricts a table to rows matching a SQL
    predicate (e.g. the as-of day of a mart that accumulates daily history).
    """
    import duckdb

    slices = slices or {}
    out: dict[str, str] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cols = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? ORDER BY table_name, ordinal_position", [schema]).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column, dtype in cols:
            expr = (f"round({_q(column)}, 6)" if dtype in ("DOUBLE", "FLOAT", "REAL") else _q(column))
            tables.setdefault(table, []).append(f"{expr} AS {_q(column)}")
        for table, exprs in tables.items():
            where = f"WHERE {slices[table]}" if table in slices else ""
            count, digest = con.execute(
                f"SELECT count(*), coalesce(sum(hash(r)), 0) "
                f"FROM (SELECT {', '.join(exprs)} FROM {_q(schema)}.{_q(table)} {where}) AS r").fetchone()
            out[table] = f"{count}:{int(digest):x}"
    return out
