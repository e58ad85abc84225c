"""The serving snapshot: what readers open, so no reader ever blocks the pipeline (docs/ANALYSTS.md).

DuckDB allows one read-write process or many read-only ones on a file, never both: a notebook holding the
pipeline's warehouse read-only makes every ``ulm run``, ``ingest`` and ``erase`` fail. So readers never open it.
After every publish (and after every erasure) :func:`refresh` writes the published marts, the recent gate results
and publish log, and the ML outputs analysts need into a NEW file beside it and renames that over
``<data>/serving/serving.duckdb`` (one ``rename``, atomic on POSIX). A reader that has the old file open keeps
reading the old snapshot (its open file survives the rename); a reader opening the path afterwards gets the new
one; nobody ever sees a mix. Table and column descriptions (dbt ``persist_docs``) are copied along, so any SQL
client shows them.

Layout of the file (catalog ``serving``): ``marts.*`` (every published table), ``audit.gate_results`` (last 90
days), ``audit.publish_log``, ``ml.*`` outputs (scores, fairness / drift reports, alerts; not the training
features), ``meta.snapshot`` (as-of day, run id, when).
"""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ulm.warehouse import AUDIT, ML, PUBLISHED, quote, relations

log = logging.getLogger("ulm.serving")

FILE_NAME = "serving.duckdb"  # the catalog is named after the file: "serving" collides with no schema
ML_OUTPUTS = ("scores", "fairness_report", "drift_report", "alerts", "model_metrics", "models")
GATE_RESULT_DAYS = 90


def serving_path(data_dir: Path) -> Path:
    return Path(data_dir) / "serving" / FILE_NAME


def copy_comments(con: duckdb.DuckDBPyConnection, src: str, dst: str, table: str) -> None:
    """Copy the table and column comments of ``src.table`` to ``dst.table`` (``src``/``dst``: [catalog.]schema)."""
    s_cat, s_schema = _split(con, src)
    d_ref = f"{dst}.{quote(table)}"
    row = con.execute("SELECT comment FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
                      "AND table_name = ?", [s_cat, s_schema, table]).fetchall()
    if row and row[0][0]:
        con.execute(f"COMMENT ON TABLE {d_ref} IS {_lit(row[0][0])}")
    for column, comment in con.execute(
            "SELECT column_name, comment FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
            "AND table_name = ? AND comment IS NOT NULL AND comment <> ''", [s_cat, s_schema, table]).fetchall():
        con.execute(f"COMMENT ON COLUMN {d_ref}.{quote(column)} IS {_lit(comment)}")


def _split(con: duckdb.DuckDBPyConnection, ref: str) -> tuple[str, str]:
    parts = [p.strip('"') for p in ref.split(".")]
    if len(parts) == 2:
        return parts[0], parts[1]
    return con.execute("SELECT current_database()").fetchall()[0][0], parts[0]


def _lit(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def refresh(con: duckdb.DuckDBPyConnection, data_dir: Path, as_of=None, run_id: str | None = None,
            reason: str = "publish") -> dict:
    """Write a new serving snapshot from the published schemas of ``con`` and swap it in; returns a summary."""
    t0 = time.perf_counter()
    target = serving_path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{FILE_NAME}.*.tmp"):  # a killed earlier refresh
        stale.unlink(missing_ok=True)
    tmp = target.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con.execute(f"ATTACH {_lit(str(tmp))} AS _serving")
    tables = 0
    try:
        plan: list[tuple[str, str, str]] = [(PUBLISHED, t, "") for t in relations(con, PUBLISHED)]
        audit = relations(con, AUDIT)
        if "gate_results" in audit:
            plan.append((AUDIT, "gate_results", f"WHERE checked_at >= now()::TIMESTAMP - INTERVAL {GATE_RESULT_DAYS} DAY"))
        if "publish_log" in audit:
            plan.append((AUDIT, "publish_log", ""))
        ml = relations(con, ML)
        plan += [(ML, t, "") for t in ML_OUTPUTS if t in ml]
        for schema in dict.fromkeys(s for s, _, _ in plan):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS _serving.{quote(schema)}")
        for schema, table, where in plan:
            con.execute(f"CREATE TABLE _serving.{quote(schema)}.{quote(table)} AS "
                        f"SELECT * FROM {quote(schema)}.{quote(table)} {where}")
            copy_comments(con, schema, f"_serving.{quote(schema)}", table)
            tables += 1
        con.execute("CREATE SCHEMA _serving.meta")
        con.execute("CREATE TABLE _serving.meta.snapshot AS SELECT ?::DATE AS as_of, ?::VARCHAR AS run_id, "
                    "?::VARCHAR AS reason, ?::TIMESTAMP AS written_at",
                    [as_of, run_id, reason, datetime.now(timezone.utc).replace(tzinfo=None)])
        con.execute("COMMENT ON TABLE _serving.meta.snapshot IS 'Which publish this snapshot holds (as-of business "
                    "day, run id) and when it was written (UTC).'")
        con.execute("CHECKPOINT _serving")
    except BaseException:
        con.execute("DETACH _serving")
        tmp.unlink(missing_ok=True)
        raise
    con.execute("DETACH _serving")
    Path(str(tmp) + ".wal").unlink(missing_ok=True)
    os.replace(tmp, target)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("serving snapshot %s: %d tables (%s) in %.1fs", target, tables, reason, seconds)
    return {"path": str(target), "tables": tables, "seconds": seconds}
