"""
### ulm_daily - the daily lifecycle pipeline (write-audit-publish)

One run per **as-of business day** (logical date = start of that day in the business timezone; a manual
run may pass the param `as_of`). Backfills: `ulm backfill START END`, or `airflow backfill create` /
`ULM_DAG_CATCHUP=true` in a deployment (runs are strictly one at a time: `max_active_runs=1`).

1. **ingest** - new landing files up to the as-of day into `raw` (quarantine + `raw.load_audit`).
2. **gate_landing** (Gate 1) - this run's loads reconcile, invalid ratios under `max_invalid_ratio`, none failed.
3. **dbt_audit** - Cosmos `DbtTaskGroup`, WATCHER mode: ONE `dbt build` (producer, pool `ulm_duckdb`)
   into `audit_staging` / `audit_intermediate` / `audit_marts`; every model is a sensor task in the UI.
4. **gate_staging** (Gate 2) and **gate_marts** (Gate 3) - Great Expectations suites from `expectations/`.
5. **publish** - `audit_marts` replaces `marts` in one DuckDB transaction.
6. **export_audiences** - Parquet + CSV per rule under `data/exports/<as_of>/`; emits the Asset
   `ulm_published_marts`, which triggers `ulm_ml` scoring.

A failing gate fails its task with every failed expectation and its observed value; nothing downstream
runs and the published `marts` stay exactly as they were. Gate results: `audit.gate_results`;
Data Docs: `data/docs/gx/index.html`. Every task writing DuckDB runs in pool `ulm_duckdb` (1 slot).
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

sys.path.insert(0, os.path.dirname(__file__))
from ulm_common import (  # noqa: E402
    BUSINESS_TZ,
    CATCHUP,
    DEFAULT_ARGS,
    MARTS_ASSET,
    POOL,
    START_DATE,
    as_of_from_context,
    landing_dir_default,
    run_id_of,
    user_errors_fail_fast,
    warehouse,
    warm_up_gate_imports,
)

from ulm.config import data_dir, dbt_project_dir  # noqa: E402
from ulm.orchestrate import dbt_manifest_path  # noqa: E402

AUDIT_PREFIX = "audit_"
DBT_TASK_GROUP = "dbt_audit"
EXECUTION_MODE = os.environ.get("ULM_DBT_EXECUTION_MODE", "watcher").lower()  # watcher | local (measured)
INVOCATION_MODE = os.environ.get("ULM_DBT_INVOCATION_MODE", "subprocess").lower()  # subprocess | dbt_runner


def _dbt_task_group():
    """Cosmos task group building every model into the audit schemas (see docs/ORCHESTRATION.md)."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    project = dbt_project_dir()
    manifest = dbt_manifest_path()
    watcher = EXECUTION_MODE == "watcher"
    dbt_vars = {"as_of": "{{ ti.xcom_pull(task_ids='ingest')['as_of'] }}", "schema_prefix": AUDIT_PREFIX}
    return DbtTaskGroup(
        group_id=DBT_TASK_GROUP,
        project_config=ProjectConfig(dbt_project_path=project, install_dbt_deps=False, partial_parse=True,
                                     manifest_path=manifest if manifest.exists() else None),
        profile_config=ProfileConfig(profile_name="ulm", target_name="duckdb",
                                     profiles_yml_filepath=project / "profiles.yml"),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER if watcher else ExecutionMode.LOCAL,
            # measured: dbt in its own process (SUBPROCESS) vs in the task process (DBT_RUNNER, whose per-event
            # callback competes with dbt's threads for the GIL) - see docs/ORCHESTRATION.md
            invocation_mode=InvocationMode(INVOCATION_MODE),
            # the producer (the one process that writes DuckDB) takes the single pool slot, never retries
            setup_operator_args={"pool": POOL, "retries": 0} if watcher else None,
        ),
        # the manifest from `dbt parse` (ulm run / the image entrypoint refresh it); dbt ls only as fallback
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST if manifest.exists() else LoadMode.DBT_LS,
                                   test_behavior=TestBehavior.AFTER_EACH, emit_datasets=False,
                                   # dbt unit tests test SQL logic on fixtures: CI runs them, daily runs do not
                                   exclude=["resource_type:unit_test"],
                                   # LOCAL: a relationships test must wait for both of its models
                                   should_detach_multiple_parents_tests=not watcher),
        operator_args={
            "vars": dbt_vars,
            # watcher consumers only read XCom; LOCAL mode runs dbt per task, so it queues on the pool
            **({"poke_interval": 1, "retries": 0, "deferrable": True, "timeout": 6 * 3600} if watcher
               else {"pool": POOL}),
        },
        default_args={"retries": 0},
    )


def sequential_watchers(group) -> None:
    """Under ``ulm run`` (``dag.test``: one task at a time) no sensor may start before the producer.

    In a task group, Cosmos starts the root watcher sensors next to the producer so that, with a real
    executor, they sense while it builds. Run one at a time, a sensor picked first would wait forever for a
    producer that cannot start; so the root sensors follow the producer and read its per-model results once
    it is done. ``all_done_min_one_success``: after a failed build a sensor still reports its own model's
    failure, but when the producer never ran (an upstream gate failed) the sensors do not run either.
    """
    if EXECUTION_MODE != "watcher" or os.environ.get("ULM_SEQUENTIAL_TASKS") != "1":
        return
    producer = group.get_child_by_label("dbt_producer_watcher")
    members = {t.task_id for t in group.iter_tasks()}
    for task in group.iter_tasks():
        if task is producer or task.task_id == f"{producer.task_id}_done":
            continue
        if not (task.upstream_task_ids & members):
            producer >> task
            task.trigger_rule = "all_done_min_one_success"


with DAG(
    dag_id="ulm_daily",
    description="Ingest -> Gate 1 -> dbt (audit) -> Gates 2/3 -> publish -> audience export",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=BUSINESS_TZ),
    start_date=START_DATE,
    catchup=CATCHUP,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=12),
    params={"as_of": Param(None, type=["null", "string"], format="date",
                           description="As-of business day YYYY-MM-DD (default: the logical date's day)")},
    tags=["ulm", "daily"],
) as dag:

    @task(pool=POOL, doc_md="Load new landing files (stamped <= as-of day) into `raw`; contract failures "
                            "are audited as failed loads and reported by gate_landing.")
    @user_errors_fail_fast
    def ingest(**context) -> dict:
        from ulm.errors import ContractError
        from ulm.ingest import ingest_dir

        warm_up_gate_imports()
        as_of = as_of_from_context(context)
        since = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        out = {"as_of": as_of.isoformat(), "since": since.isoformat(), "contract_error": None}
        try:
            summary = ingest_dir(landing_dir_default(), warehouse(), until=as_of, progress=False)
            out["tables"] = {t: {k: v for k, v in s.items() if k != "load_ids"}
                             for t, s in summary["tables"].items()}
        except ContractError as exc:  # the failed load is in raw.load_audit: Gate 1 decides
            out["contract_error"] = str(exc).splitlines()[0]
        return out

    @task(pool=POOL, retries=0, doc_md="Gate 1 (landing): GX suite `landing_contract` on this run's loads.")
    @user_errors_fail_fast
    def gate_landing(ingested: dict, **context) -> dict:
        from datetime import date

        from expectations.gates import gate_landing as run_gate

        return run_gate(warehouse(), date.fromisoformat(ingested["as_of"]), run_id_of(context),
                        datetime.fromisoformat(ingested["since"]))

    @task(pool=POOL, retries=0, doc_md="Gate 2 (staging): freshness, volume, nulls, accepted values, "
                                       "uniqueness on `audit_staging`.")
    @user_errors_fail_fast
    def gate_staging(**context) -> dict:
        from expectations.gates import gate_staging as run_gate

        return run_gate(warehouse(), as_of_from_context(context), run_id_of(context), AUDIT_PREFIX)

    @task(pool=POOL, retries=0, doc_md="Gate 3 (marts): SPEC §12 invariants on `audit_marts`.")
    @user_errors_fail_fast
    def gate_marts(**context) -> dict:
        from expectations.gates import gate_marts as run_gate

        return run_gate(warehouse(), as_of_from_context(context), run_id_of(context), AUDIT_PREFIX)

    @task(pool=POOL, doc_md="Write-audit-publish: `audit_marts` replaces `marts` in one DuckDB transaction.")
    @user_errors_fail_fast
    def publish(**context) -> dict:
        from ulm.publish import publish as run_publish

        return run_publish(warehouse(), as_of_from_context(context), run_id_of(context))

    @task(pool=POOL, outlets=[MARTS_ASSET],
          doc_md="Audience files per rule (holdout excluded) under data/exports/<as_of>/; emits the Asset.")
    @user_errors_fail_fast
    def export_audiences(**context) -> dict:
        from ulm.publish import export_audiences as run_export

        return run_export(warehouse(), as_of_from_context(context), data_dir() / "exports")

    ingested = ingest()
    landing_ok = gate_landing(ingested)
    dbt_audit = _dbt_task_group()
    staging_ok = gate_staging()
    marts_ok = gate_marts()
    published = publish()
    sequential_watchers(dbt_audit)
    landing_ok >> dbt_audit >> staging_ok >> marts_ok >> published >> export_audiences()
