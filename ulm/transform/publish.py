"""Write-audit-publish: the one place the published ``marts`` change (docs/METRICS.md#quality-gates-and-publishing).

``publish`` replaces the published ``marts`` schema with the audited build in ``<prefix>marts`` inside ONE
DuckDB transaction: every published table is dropped and re-created from its audited twin (views are
materialized, since they would otherwise point into the audit schemas), tables that vanished from the build
are dropped, and a row goes to ``audit.publish_log``. Readers either see the previous marts or the new ones,
never a mix; on any error the transaction rolls back and the previous marts stay exactly as they were.
Table and column comments (dbt ``persist_docs``) are copied along. After the commit the serving snapshot that
readers open is rewritten and swapped in (:mod:`ulm.transform.serving`).

On the ``postgres`` target (docs/DECISIONS.md D60, D62) the publish is PostgreSQL's schema swap in one transaction
(:func:`ulm.warehouse.postgres.publish_schema`); then, in one DuckDB transaction, the DuckDB warehouse's ``marts``
becomes a copy of the just-published Postgres marts and the publish is logged, so the serving snapshot, the
audience exports and the dashboard read exactly what Postgres published.

On ``spark`` (D84) every publish copies the audited marts into a new Spark database ``marts__run_<run id>`` and switches
the one-row view ``audit.published_run`` to it (one metastore operation); ``marts``' views follow; the DuckDB
``marts`` becomes a copy of that database in one DuckDB transaction, as on Postgres.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.transform import serving
from ulm.warehouse import (
    PUBLISHED,
    connect,
    connect_read_only,
    ensure_audit_schema,
    quote,
    relations,
    transaction,
)

log = logging.getLogger("ulm.publish")


def publish(ctx: RunContext) -> dict:
    """Atomically replace ``marts`` with the context's audited ``<prefix>marts``; returns what was published."""
    source_schema, target_schema = ctx.schema(PUBLISHED), PUBLISHED
    if source_schema == target_schema:
        raise UlmError("publish: the run context has no schema prefix, so there is no audited build to publish")
    t0 = time.perf_counter()
    if ctx.target == "postgres":
        return _publish_postgres(ctx, source_schema, target_schema, t0)
    if ctx.target == "spark":
        return _publish_spark(ctx, source_schema, target_schema, t0)
    con = connect(ctx.warehouse)
    try:
        source = relations(con, source_schema)
        if not source:
            raise UlmError(f"warehouse {ctx.warehouse}: schema {source_schema} holds no tables; nothing to publish")
        ensure_audit_schema(con)
        with transaction(con):
            counts = _swap(con, source, source_schema, target_schema)
            con.execute("INSERT INTO audit.publish_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [ctx.run_id, ctx.require_as_of(), source_schema, target_schema, len(counts),
                         sum(counts.values()), datetime.now(timezone.utc).replace(tzinfo=None)])
        snapshot = serving.refresh(con, ctx.data_dir, ctx.as_of, ctx.run_id, reason="publish")
    finally:
        con.close()
    seconds = round(time.perf_counter() - t0, 3)
    log.info("published %d tables (%d rows) from %s to %s in %.1fs", len(counts), sum(counts.values()),
             source_schema, target_schema, seconds)
    return {"tables": len(counts), "rows": sum(counts.values()), "seconds": seconds,
            "published": sorted(counts), "serving": snapshot}


def _publish_postgres(ctx: RunContext, source_schema: str, target_schema: str, t0: float) -> dict:
    """Schema swap on Postgres, then the DuckDB mirror of the published marts + publish log, then serving."""
    from ulm.warehouse import postgres

    cfg = postgres.PgConfig.from_env()
    counts = postgres.publish_schema(cfg, source_schema, target_schema)
    snapshot = _mirror(ctx, f"postgres:{source_schema}", target_schema, counts, f"PostgreSQL {target_schema}",
                       lambda con: postgres.copy_to_duckdb(cfg, target_schema, con))
    seconds = round(time.perf_counter() - t0, 3)
    log.info("published %d tables (%d rows) from %s to %s on PostgreSQL %s:%s/%s in %.1fs", len(counts),
             sum(counts.values()), source_schema, target_schema, cfg.host, cfg.port, cfg.dbname, seconds)
    return {"tables": len(counts), "rows": sum(counts.values()), "seconds": seconds,
            "published": sorted(counts), "serving": snapshot, "target": "postgres"}


def _publish_spark(ctx: RunContext, source_schema: str, target_schema: str, t0: float) -> dict:
    """Spark's versioned publish (a copy per run, one pointer view switched), then the DuckDB mirror of what the
    pointer names + publish log, then serving: the same shape as on Postgres."""
    from ulm.privacy.keys import require_pii_key
    from ulm.warehouse import spark

    key = require_pii_key()
    database, counts = spark.publish_database(ctx.warehouse, key, source_schema, target_schema, ctx.run_id)
    snapshot = _mirror(ctx, f"spark:{source_schema}", target_schema, counts, f"Spark {database}",
                       lambda con: spark.copy_to_duckdb(ctx.warehouse, key, database, con, target_schema))
    seconds = round(time.perf_counter() - t0, 3)
    log.info("published %d tables (%d rows) from %s to %s on Spark (%s) in %.1fs", len(counts), sum(counts.values()),
             source_schema, target_schema, database, seconds)
    return {"tables": len(counts), "rows": sum(counts.values()), "seconds": seconds,
            "published": sorted(counts), "serving": snapshot, "target": "spark", "database": database}


def _mirror(ctx: RunContext, source_label: str, target_schema: str, counts: dict[str, int], what: str,
            copy: Callable[[Any], dict[str, int]]) -> dict:
    """In one DuckDB transaction: DuckDB ``target_schema`` := ``copy(con)`` (the marts another engine just published;
    must equal ``counts``) and the ``audit.publish_log`` row; then the serving snapshot. Returns the snapshot info."""
    con = connect(ctx.warehouse)
    try:
        ensure_audit_schema(con)
        with transaction(con):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(target_schema)}")
            for name, kind in relations(con, target_schema).items():
                con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {quote(target_schema)}.{quote(name)}")
            mirrored = copy(con)
            if mirrored != counts:
                raise UlmError(f"publish: the DuckDB copy of {what} differs from what was published "
                               f"({sum(mirrored.values())} vs {sum(counts.values())} rows)")
            con.execute("INSERT INTO audit.publish_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [ctx.run_id, ctx.require_as_of(), source_label, target_schema, len(counts),
                         sum(counts.values()), datetime.now(timezone.utc).replace(tzinfo=None)])
        return serving.refresh(con, ctx.data_dir, ctx.as_of, ctx.run_id, reason="publish")
    finally:
        con.close()


def _swap(con, source: dict[str, str], source_schema: str, target_schema: str) -> dict[str, int]:
    """Inside the caller's transaction: target := copy of source (tables and materialized views)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(target_schema)}")
    for name, kind in relations(con, target_schema).items():
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {quote(target_schema)}.{quote(name)}")
    counts: dict[str, int] = {}
    for name in source:
        con.execute(f"CREATE TABLE {quote(target_schema)}.{quote(name)} AS "
                    f"SELECT * FROM {quote(source_schema)}.{quote(name)}")
        serving.copy_comments(con, source_schema, quote(target_schema), name)
        counts[name] = con.execute(f"SELECT count(*) FROM {quote(target_schema)}.{quote(name)}").fetchone()[0]
    return counts


# ------------------------------------------------------------------------------------------ verification

def table_checksums(warehouse: Path, schema: str = PUBLISHED,
                    slices: dict[str, str] | None = None) -> dict[str, str]:
    """Order-independent checksum of every table of ``schema`` (read-only), to compare builds and publishes.

    Floating-point columns are rounded to 6 decimals first: parallel aggregation may change the last bits of
    a double between two otherwise identical builds. ``slices`` restricts a table to rows matching a SQL
    predicate (e.g. the as-of day of a mart that accumulates daily history).
    """
    slices = slices or {}
    out: dict[str, str] = {}
    with connect_read_only(warehouse) as con:
        cols = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? ORDER BY table_name, ordinal_position", [schema]).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column, dtype in cols:
            expr = (f"round({quote(column)}, 6)" if dtype in ("DOUBLE", "FLOAT", "REAL") else quote(column))
            tables.setdefault(table, []).append(f"{expr} AS {quote(column)}")
        for table, exprs in tables.items():
            where = f"WHERE {slices[table]}" if table in slices else ""
            count, digest = con.execute(
                f"SELECT count(*), coalesce(sum(hash(r)), 0) "
                f"FROM (SELECT {', '.join(exprs)} FROM {quote(schema)}.{quote(table)} {where}) AS r").fetchone()
            out[table] = f"{count}:{int(digest):x}"
    return out
