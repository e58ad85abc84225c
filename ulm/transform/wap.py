"""``ulm build``: write-audit-publish outside Airflow, exactly as the daily DAG does it.

1. ``dbt build`` into the audit schemas (``audit_staging``, ``audit_intermediate``, ``audit_marts``);
2. Gate 2 (staging) and Gate 3 (marts) on them;
3. publish: ``audit_marts`` replaces ``marts`` in one transaction, recorded in ``audit.publish_log``;
4. the audience export of the as-of day.

A failure at any step leaves the published marts and the exports as they were. A developer build that skips
the gates (:func:`dev_build`) writes ``dev_staging`` / ``dev_intermediate`` / ``dev_marts`` and never ``marts``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.warehouse import AUDIT_PREFIX, RAW, connect_read_only

log = logging.getLogger("ulm.build")

DEV_PREFIX = "dev_"


def require_raw_data(ctx: RunContext) -> None:
    """UlmError unless the warehouse exists and holds loaded rows (a build of nothing is not a success)."""
    from ulm.core import contract

    if not ctx.warehouse.exists():
        raise UlmError(f"warehouse {ctx.warehouse} does not exist; run `ulm ingest` first (or check --warehouse)")
    with connect_read_only(ctx.warehouse) as con:
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                                          [RAW]).fetchall()}
        rows = sum(con.execute(f'SELECT count(*) FROM {RAW}."{t}"').fetchone()[0]
                   for t in contract.TABLES if t in have)
    if not rows:
        raise UlmError(f"warehouse {ctx.warehouse} holds no raw data; run `ulm ingest` first")


def build_and_publish(ctx: RunContext, full_refresh: bool = False, unit_tests: bool = False,
                      progress: bool = True) -> dict[str, Any]:
    """dbt build into the audit schemas, Gates 2-3, atomic publish, audience export; returns what each did."""
    from ulm.quality.gates import gate_marts, gate_staging
    from ulm.transform.dbt import build
    from ulm.transform.exports import export_audiences
    from ulm.transform.publish import publish

    ctx = ctx.with_(schema_prefix=AUDIT_PREFIX)
    ctx.require_as_of()
    require_raw_data(ctx)
    out: dict[str, Any] = {"as_of": ctx.as_of.isoformat(), "warehouse": str(ctx.warehouse), "run_id": ctx.run_id}
    t0 = time.perf_counter()
    log.info("1/4 dbt build into %s* as of %s", AUDIT_PREFIX, ctx.as_of)
    out["dbt"] = build(ctx, full_refresh=full_refresh, progress=progress, unit_tests=unit_tests)
    log.info("2/4 gates 2 (staging) and 3 (marts)")
    out["gate_staging"] = gate_staging(ctx)
    out["gate_marts"] = gate_marts(ctx)
    log.info("3/4 publish %smarts -> marts", AUDIT_PREFIX)
    out["publish"] = publish(ctx)
    log.info("4/4 audience export")
    out["export"] = export_audiences(ctx)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def dev_build(ctx: RunContext, full_refresh: bool = False, select: str | None = None, unit_tests: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """A gate-less developer build into ``dev_*`` schemas (never the published marts)."""
    from ulm.transform.dbt import build

    require_raw_data(ctx)
    return build(ctx.with_(schema_prefix=DEV_PREFIX), full_refresh=full_refresh, select=select, progress=progress,
                 unit_tests=unit_tests)
