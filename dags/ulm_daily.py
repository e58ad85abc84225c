"""
### ulm_daily - the daily lifecycle pipeline (write-audit-publish)

One run per **as-of business day** (logical date = start of that day in the business timezone; a manual
run may pass the param `as_of`). Backfills: `ulm backfill START END`, or `airflow backfill create` /
`ULM_DAG_CATCHUP=true` in a deployment (runs are strictly one at a time: `max_active_runs=1`).

0. **context** - the run context (as-of day, warehouse, schema prefix `audit_`, run id), read by every task.
1. **ingest** - new landing files up to the as-of day into `raw` (quarantine + `raw.load_audit`).
2. **gate_landing** (Gate 1) - this run's loads reconcile, invalid ratios under `max_invalid_ratio`, none failed.
   **erase** - pending erasure requests, in every layer and file, before anything is built.
3. **dbt_audit** - Cosmos `DbtTaskGroup`, WATCHER mode: ONE `dbt build` (producer, pool `ulm_duckdb`)
   into `audit_staging` / `audit_intermediate` / `audit_marts`; every model is a sensor task in the UI.
4. **gate_staging** (Gate 2) and **gate_marts** (Gate 3) - Great Expectations suites (`ulm.quality`).
5. **publish** - `audit_marts` replaces `marts` in one DuckDB transaction.
6. **export_audiences** - Parquet + CSV per rule under `data/exports/<as_of>/`; emits the Asset
   `ulm_published_marts`, which triggers `ulm_ml` scoring.

A failing gate fails its task with every failed expectation and its observed value; nothing downstream
runs and the published `marts` stay exactly as they were. Gate results: `audit.gate_results`;
Data Docs: `data/docs/gx/index.html`. Every task writing DuckDB runs in pool `ulm_duckdb` (1 slot).
What each task does: `ulm/orchestration/tasks.py`.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from ulm.core.context import TARGETS
from ulm.orchestration import tasks as t
from ulm.orchestration.dbt_group import dbt_audit_group
from ulm.warehouse import AUDIT_PREFIX

with DAG(
    dag_id="ulm_daily",
    description="Ingest -> Gate 1 -> erase -> dbt (audit) -> Gates 2/3 -> publish -> audience export",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=t.BUSINESS_TZ) if t.scheduled() else None,
    **t.dag_settings(),
    max_active_runs=1,
    default_args=t.DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=12),
    params={"as_of": Param(None, type=["null", "string"], format="date",
                           description="As-of business day YYYY-MM-DD (default: the logical date's day)"),
            "target": Param(None, type=["null", "string"], enum=[None, *TARGETS],
                            description="dbt target (default duckdb; `ulm run --target`, issue #15)")},
    tags=["ulm", "daily"],
) as dag:
    run = t.context_task(schema_prefix=AUDIT_PREFIX)
    ingested = t.ingest(run)
    landing_ok = t.gate_landing(run, ingested)
    dbt_audit = dbt_audit_group(run)
    staging_ok = t.gate_staging(run)
    marts_ok = t.gate_marts(run)
    published = t.publish(run)
    landing_ok >> t.erase(run) >> dbt_audit >> staging_ok >> marts_ok >> published >> t.export_audiences(run)
