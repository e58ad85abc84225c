"""The three quality gates (docs/METRICS.md#quality-gates-and-publishing) as functions the DAG tasks call.

Each opens the warehouse, evaluates its suites with GX (see :mod:`ulm.quality.core`), stores every result in
``audit.gate_results``, rebuilds the Data Docs under ``<data dir>/docs/gx/`` and raises
:class:`~ulm.quality.core.GateFailed` when a critical expectation fails. Returns the report summary.
Gates 2 and 3 check the run's audited build (``<prefix>staging``, ``<prefix>marts``) on the run's target: on
``postgres`` the same portable frame queries run there (:class:`ulm.warehouse.postgres.Reader`), the results are
stored in the DuckDB warehouse file as on DuckDB (docs/DECISIONS.md D61); on ``spark`` they run in an ANSI session of
the process's Spark (:class:`ulm.warehouse.spark.Reader`, D83). Gate 1 checks the DuckDB load records
on every target (ingest validates in DuckDB, D53).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.quality.core import existing_tables, run_gate
from ulm.quality.landing import landing_suites
from ulm.quality.marts import marts_suites
from ulm.quality.staging import staging_suites
from ulm.warehouse import connect


def gate_landing(ctx: RunContext, since: datetime) -> dict:
    """Gate 1: the loads that started at or after ``since`` reconcile, are under the ratio, none failed."""
    with connect(ctx.warehouse) as con:
        return run_gate(con, "landing", landing_suites(since), ctx.require_as_of(), ctx.run_id,
                        ctx.data_dir).summary()


@contextmanager
def _target(ctx: RunContext, con) -> Iterator[tuple]:
    """(tables(schema) -> {table: columns}, read(sql) -> DataFrame or None for ``con``) on the run's target."""
    if ctx.target == "duckdb":
        yield (lambda schema: existing_tables(con, schema)), None
        return
    if ctx.target == "spark":
        from ulm.privacy.keys import require_pii_key
        from ulm.warehouse import spark

        with spark.Reader(ctx.warehouse, require_pii_key()) as reader:
            yield reader.tables, reader.df
        return
    if ctx.target != "postgres":
        raise UlmError(f"gates: target {ctx.target!r} is not supported yet")
    from ulm.warehouse import postgres

    with postgres.Reader(postgres.PgConfig.from_env()) as reader:
        yield reader.tables, reader.df


def gate_staging(ctx: RunContext) -> dict:
    """Gate 2 on ``<prefix>staging``: freshness, volume, accepted values, ranges, uniqueness (NULLs: the models' dbt
    contracts); the size of the largest person in ``<prefix>intermediate`` (a warning)."""
    schema, intermediate = ctx.schema("staging"), ctx.schema("intermediate")
    with connect(ctx.warehouse) as con, _target(ctx, con) as (tables, read):
        suites = staging_suites(tables(schema), schema, ctx.require_as_of(), tables(intermediate), intermediate,
                                 target=ctx.target)
        return run_gate(con, "staging", suites, ctx.require_as_of(), ctx.run_id, ctx.data_dir,
                        read=read).summary()


def gate_marts(ctx: RunContext) -> dict:
    """Gate 3 on ``<prefix>marts`` (GMV reconciled against ``<prefix>staging``): the publishing invariants."""
    marts, staging, intermediate = ctx.schema("marts"), ctx.schema("staging"), ctx.schema("intermediate")
    with connect(ctx.warehouse) as con, _target(ctx, con) as (tables, read):
        suites = marts_suites(tables(marts), marts, staging, ctx.require_as_of(), tables(intermediate), intermediate,
                              target=ctx.target)
        return run_gate(con, "marts", suites, ctx.require_as_of(), ctx.run_id, ctx.data_dir, read=read).summary()
