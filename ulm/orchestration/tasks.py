"""The tasks of the ULM DAGs, their defaults and callbacks: everything ``dags/*.py`` wires together.

DAG files stay thin (configuration and wiring only); what a task does lives here. Imports stay light: the DAG
processor imports this module often, so the ULM, GX and ML modules a task needs are imported inside it.

Every DAG run starts with task ``context``: it builds the :class:`~ulm.core.context.RunContext` of the run
once (as-of day from the param ``as_of`` or the logical date in business time, warehouse and directories from
the settings, run id from Airflow) and hands it to every other task through XCom.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Asset, task

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.orchestration.airflow_env import POOL

log = logging.getLogger("ulm.dags")

MARTS_ASSET = Asset(name="ulm_published_marts", uri="file:///ulm/warehouse/marts", group="ulm")
BUSINESS_TZ = _settings.param("business_timezone")
DEFAULT_ML_TRAIN_CRON = "0 4 * * 1"  # Mondays 04:00 business time; override: vars.ulm.ml_train_schedule
CONTEXT_XCOM = "{{ ti.xcom_pull(task_ids='context') }}"


def ml_train_schedule() -> str:
    """Cron of the weekly training run (business timezone)."""
    return str(_settings.params().get("ml_train_schedule", DEFAULT_ML_TRAIN_CRON))


def context_field(name: str) -> str:
    """Jinja reading one field of the run context from XCom (for templated operator arguments)."""
    return "{{ ti.xcom_pull(task_ids='context')['" + name + "'] }}"


# ----------------------------------------------------------------------------------------------- callbacks

def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown reason"
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:2000]


def _record(event: str, context: dict[str, Any], reason: str) -> None:
    """Append a task event to the events file of ``ulm run`` (if any) so the CLI can print the reason."""
    path = _settings.settings().task_events
    if path is None:
        return
    ti = context.get("ti") or context.get("task_instance")
    row = {"event": event, "dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
           "run_id": getattr(ti, "run_id", None), "reason": reason}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def on_task_failure(context: dict[str, Any]) -> None:
    """Log the one-line reason a task failed (and hand it to ``ulm run``)."""
    ti = context.get("ti") or context.get("task_instance")
    reason = _one_line(context.get("exception"))
    log.error("ULM task failed: %s.%s: %s", getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?"), reason)
    _record("failed", context, reason)


def on_task_skipped(context: dict[str, Any]) -> None:
    """A task skipped by Airflow (trigger rules); tasks that skip themselves record their reason in :func:`skip`."""
    if context.get("exception") is not None:
        _record("skipped", context, _one_line(context.get("exception")))


def skip(reason: str) -> None:
    """Skip the running task with ``reason``: in its log, the Airflow UI, and the summary of ``ulm run``."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowSkipException

    log.info("skipping: %s", reason)
    _record("skipped", dict(get_current_context()), reason)
    raise AirflowSkipException(reason)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ulm",
    # every ULM task goes where the DuckDB file is: the worker consuming this queue (docs/ORCHESTRATION.md)
    "queue": _settings.settings().celery_queue,
    "retries": 2,
    "retry_delay": timedelta(seconds=_settings.settings().task_retry_delay_seconds),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=6),
    "on_failure_callback": on_task_failure,
    "on_skipped_callback": on_task_skipped,
}


def dag_settings() -> dict[str, Any]:
    """Start date and catch-up of the DAGs (deployment settings)."""
    s = _settings.settings()
    return {"start_date": datetime.combine(s.dag_start_date, datetime.min.time()), "catchup": s.dag_catchup}


def scheduled() -> bool:
    """``ULM_DAG_SCHEDULE=daily`` (default): the daily cron and the weekly training cron run the DAGs;
    ``manual``: runs come only from triggers (REST API, UI, an external scheduler) and, for ``ulm_ml``, publishes."""
    return _settings.settings().dag_schedule == "daily"


def _die_with_supervisor() -> None:
    """With a real executor the task runs in its own process group under Airflow's supervisor on a worker. When the
    worker dies (OOM, kill -9), the task process would live on, writing DuckDB beside its own retry: the kernel
    kills it with its supervisor instead (the warehouse is transactional, a killed writer leaves no partial state).
    Under ``ulm run`` the task runs in the runner's child, which handles its parent's death itself."""
    if _settings.settings().sequential_tasks:
        return
    import signal

    from ulm.orchestration.processes import die_with_parent

    die_with_parent(signal.SIGKILL)


def user_errors_fail_fast(fn: Callable) -> Callable:
    """Expected failures (contract, gate, lock) fail the task at once; anything else may be retried. The return
    value (the task's XCom) is made strict JSON (:func:`_jsonable`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        _die_with_supervisor()
        try:
            out = fn(*args, **kwargs)
        except UlmError as exc:
            raise AirflowFailException(_one_line(exc)) from exc
        return None if out is None else _jsonable(out)

    return wrapper


# ----------------------------------------------------------------------------------------------- context

def run_context(context: dict[str, Any], schema_prefix: str = "") -> RunContext:
    """The run context of a DAG run: param ``as_of`` if given, else the logical date in business time.

    For scheduled runs (daily data intervals in the business timezone) the logical date is the start of the
    business day being closed, so the as-of day is exactly the day the run covers.
    """
    from datetime import date
    from zoneinfo import ZoneInfo

    explicit = (context.get("params") or {}).get("as_of")
    if explicit:
        as_of = date.fromisoformat(str(explicit))
    else:
        logical = context.get("logical_date") or (context.get("dag_run") and context["dag_run"].logical_date)
        published = _published_as_of(context)
        if logical is None and published is None:
            raise UlmError("this run has no logical date: trigger it with the param as_of=YYYY-MM-DD")
        as_of = published or logical.astimezone(ZoneInfo(BUSINESS_TZ)).date()
    return RunContext.create(as_of=as_of, schema_prefix=schema_prefix, run_id=str(context["run_id"]),
                             target=_run_target(context))


def _run_target(context: dict[str, Any]) -> str:
    """The dbt target of a run (issue #15): param ``target`` (``ulm run --target``), else the target of the publish
    that triggered an asset run, else ``duckdb``."""
    explicit = (context.get("params") or {}).get("target")
    if explicit:
        return str(explicit)
    events = context.get("triggering_asset_events") or {}
    targets = {str((getattr(ev, "extra", None) or {}).get("target") or "") for evs in events.values() for ev in evs}
    targets.discard("")
    return targets.pop() if len(targets) == 1 else "duckdb"


def _published_as_of(context: dict[str, Any]):
    """An asset-triggered run (``ulm_ml`` after a publish) covers the newest as-of day among the publish events
    that triggered it (several publishes may be folded into one run); None for other runs."""
    from datetime import date

    events = context.get("triggering_asset_events") or {}
    days = [str((getattr(ev, "extra", None) or {}).get("as_of") or "")
            for evs in events.values() for ev in evs]
    days = [date.fromisoformat(d) for d in days if d]
    return max(days) if days else None


def _ctx(run: dict) -> RunContext:
    return RunContext.from_dict(run)


def context_task(schema_prefix: str = ""):
    """Task ``context``: build the run context once; every other task reads it from XCom."""

    @task(task_id="context", retries=0, doc_md="Resolve the run context (as-of day, warehouse, schema prefix, "
                                                "run id) once; the other tasks read it from XCom.")
    @user_errors_fail_fast
    def context(**airflow_context) -> dict:
        ctx = run_context(airflow_context, schema_prefix)
        log.info("run context: %s", ctx.to_dict())
        return ctx.to_dict()

    return context()


# ----------------------------------------------------------------------------------------------- daily DAG

def _warm_up_gate_imports() -> None:
    """Under ``ulm run`` every task runs in one process, one after the other (``dag.test``). Importing Great
    Expectations costs ~10-20 s (scipy, sqlalchemy); started in a background thread by ``ingest``, it overlaps the
    load (DuckDB work, GIL released) instead of all of it landing on Gate 1. With a real executor each task is its
    own process, so nothing is started there.
    """
    import sys

    if not _settings.settings().sequential_tasks or "great_expectations" in sys.modules:
        return
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("great_expectations",), name="gx-import-warm-up",
                     daemon=True).start()


@task(pool=POOL, doc_md="Load new landing files (stamped <= as-of day) into `raw`; contract failures "
                        "are audited as failed loads and reported by gate_landing.")
@user_errors_fail_fast
def ingest(run: dict) -> dict:
    from ulm.core.errors import ContractError
    from ulm.ingest import ingest_dir
    from ulm.transform.dbt import ensure_sources

    _warm_up_gate_imports()
    ctx = _ctx(run)
    since = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    out: dict[str, Any] = {"since": since.isoformat(), "contract_error": None}
    ensure_sources(ctx.warehouse)  # the PII key is the warehouse's before anything is loaded
    try:
        summary = ingest_dir(ctx.landing_dir, ctx.warehouse, until=ctx.require_as_of(), progress=False)
        out["tables"] = {t: {k: v for k, v in s.items() if k != "load_ids"} for t, s in summary["tables"].items()}
    except ContractError as exc:  # the failed load is in raw.load_audit: Gate 1 decides
        out["contract_error"] = str(exc).splitlines()[0]
    ensure_sources(ctx.warehouse)  # every dbt source exists, even for tables nothing was loaded into yet
    return out


@task(pool=POOL, retries=0, doc_md="Gate 1 (landing): GX suite `landing_contract` on this run's loads.")
@user_errors_fail_fast
def gate_landing(run: dict, ingested: dict) -> dict:
    from ulm.quality.gates import gate_landing as run_gate

    return run_gate(_ctx(run), datetime.fromisoformat(ingested["since"]))


@task(pool=POOL, doc_md="Process pending erasure requests (docs/PRIVACY.md#erasure) before anything is built: "
                        "suppression list, every layer, export files; `audit.erasure_log` has the counts. On the "
                        "postgres target, then copy raw to PostgreSQL.")
@user_errors_fail_fast
def erase(run: dict) -> dict:
    from ulm.privacy.erasure import erase as run_erase

    ctx = _ctx(run)
    out = _jsonable(run_erase(ctx.warehouse, ctx.data_dir, target=ctx.target))  # Postgres layers too (D87)
    if ctx.target == "postgres":  # raw reaches Postgres after the erasure: erased rows never get there (D64)
        from ulm.warehouse import postgres

        copied = postgres.sync_raw(ctx.warehouse, postgres.PgConfig.from_env())
        out["postgres_raw"] = {"tables": len(copied), "rows": sum(copied.values())}
    return out


@task(pool=POOL, retries=0, doc_md="Gate 2 (staging): freshness, volume, nulls, accepted values, "
                                   "uniqueness on `audit_staging`.")
@user_errors_fail_fast
def gate_staging(run: dict) -> dict:
    from ulm.quality.gates import gate_staging as run_gate

    return run_gate(_ctx(run))


@task(pool=POOL, retries=0, doc_md="Gate 3 (marts): the publishing invariants on `audit_marts`.")
@user_errors_fail_fast
def gate_marts(run: dict) -> dict:
    from ulm.quality.gates import gate_marts as run_gate

    return run_gate(_ctx(run))


@task(pool=POOL, doc_md="Write-audit-publish: `audit_marts` replaces `marts` in one DuckDB transaction.")
@user_errors_fail_fast
def publish(run: dict) -> dict:
    from ulm.transform.publish import publish as run_publish

    return run_publish(_ctx(run))


@task(pool=POOL, outlets=[MARTS_ASSET],
      doc_md="Audience files per rule (holdout excluded) under data/exports/<as_of>/; emits the Asset.")
@user_errors_fail_fast
def export_audiences(run: dict, **context) -> dict:
    from ulm.transform.exports import export_audiences as run_export

    out = run_export(_ctx(run))
    # the ML run this publish triggers reads its as-of day from the event (asset runs have no logical date)
    context["outlet_events"][MARTS_ASSET].extra = {"as_of": run["as_of"], "run_id": run.get("run_id"),
                                                   **({"target": run["target"]} if run.get("target", "duckdb")
                                                      != "duckdb" else {})}
    return out


# ----------------------------------------------------------------------------------------------- ML DAG

def _jsonable(value):
    """XCom-safe copy of an entry point's summary (dates, paths, numpy numbers as strings, NaN as null)."""
    # NaN and infinities become null: XCom travels as strict JSON through the API server of a deployment
    return json.loads(json.dumps(value, default=str), parse_constant=lambda _: None)


def _should_train(context: dict[str, Any]) -> tuple[bool, str]:
    explicit = (context.get("params") or {}).get("train")
    if explicit is not None:
        return bool(explicit), f"param train={explicit}"
    run_type = str(getattr(context.get("dag_run"), "run_type", "")).lower()
    if "asset" in run_type:
        missing = _missing_champions()
        if missing:
            return True, f"asset-triggered run and no @champion yet for {', '.join(missing)}"
        return False, "asset-triggered run: scoring only (training runs on the weekly schedule)"
    return True, f"{run_type or 'manual'} run"


def _missing_champions() -> list[str]:
    """Registered model names without a ``@champion`` alias (scoring needs both churn and LTV)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ulm.ml import tracking

    tracking.configure()
    client, missing = MlflowClient(), []
    for name in tracking.MODEL_NAMES.values():
        try:
            client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            missing.append(name)
    return missing


@task(pool=POOL, doc_md="Train churn + LTV models on point-in-time snapshots; MLflow registry "
                        "challenger/champion (ulm.ml.train). Skipped on asset-triggered runs.")
@user_errors_fail_fast
def train(run: dict, **context) -> dict:
    from ulm.ml.train import train as run_train

    wanted, why = _should_train(context)
    if not wanted:
        skip(f"training not scheduled for this run ({why})")
    ctx = _ctx(run)
    return _jsonable(run_train(as_of=ctx.require_as_of(), warehouse=ctx.warehouse))


@task(pool=POOL, trigger_rule="none_failed",
      doc_md="Score the day's population (analytics consent, active in the last 90 days) with the @champion "
             "models into ml.scores (ulm.ml.score); dim_persons.unscored_reason says why the others have no score.")
@user_errors_fail_fast
def score(run: dict) -> dict:
    from ulm.ml.score import score as run_score

    missing = _missing_champions()
    if missing:
        skip(f"no @champion model yet for {', '.join(missing)}: nothing to score "
                                   "until a training run promotes one (param train=true)")
    ctx = _ctx(run)
    return _jsonable(run_score(as_of=ctx.require_as_of(), warehouse=ctx.warehouse, target=ctx.target))
