"""
### ulm_ml - training and scoring (SPEC §9)

Scheduled two ways (`AssetOrTimeSchedule`):

* **after every publish** - the Asset `ulm_published_marts` (emitted by `ulm_daily.export_audiences`)
  triggers a run that **scores** with the `@champion` models;
* **weekly** - the cron `ml_train_schedule` (default Mondays 04:00 business time) triggers a run that
  **trains** (new challengers, promotion decided and recorded by the ml package) and then scores.

Param `train` forces (true) or suppresses (false) training on a manual run; `as_of` sets the day (default:
the logical date's business day). Tasks call `ml.train.train(as_of, warehouse)` and
`ml.score.score(as_of, warehouse)`; while an entry point does not exist yet its task is **skipped** with the
reason, never faked. Both write the warehouse, so both run in pool `ulm_duckdb`.
"""
from __future__ import annotations

import importlib
import os
import sys
from datetime import timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

sys.path.insert(0, os.path.dirname(__file__))
from ulm_common import (  # noqa: E402
    BUSINESS_TZ,
    DEFAULT_ARGS,
    MARTS_ASSET,
    POOL,
    START_DATE,
    as_of_from_context,
    ml_train_schedule,
    user_errors_fail_fast,
    warehouse,
)


def _entry_point(module: str, name: str):
    """The ml entry point, or AirflowSkipException saying why it is not available."""
    from airflow.sdk.exceptions import AirflowSkipException

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name in (module, module.rsplit(".", 1)[0]):
            raise AirflowSkipException(f"{module}.{name} does not exist yet (no module {exc.name})") from None
        raise
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise AirflowSkipException(f"{module}.{name} does not exist yet (module has no callable {name})")
    return fn


def _missing_champions() -> list[str]:
    """Registered model names without a ``@champion`` alias (scoring needs both churn and LTV)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml import tracking

    tracking.configure()
    client, missing = MlflowClient(), []
    for name in tracking.MODEL_NAMES.values():
        try:
            client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            missing.append(name)
    return missing


def _jsonable(value):
    """XCom-safe copy of an entry point's summary (dates, paths, numpy numbers as strings)."""
    import json

    return json.loads(json.dumps(value, default=str))


def _should_train(context) -> tuple[bool, str]:
    explicit = (context.get("params") or {}).get("train")
    if explicit is not None:
        return bool(explicit), f"param train={explicit}"
    run_type = str(getattr(context.get("dag_run"), "run_type", "")).lower()
    if "asset" in run_type:
        return False, "asset-triggered run: scoring only (training runs on the weekly schedule)"
    return True, f"{run_type or 'manual'} run"


with DAG(
    dag_id="ulm_ml",
    description="Weekly training + scoring after every publish of the marts",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(ml_train_schedule(), timezone=BUSINESS_TZ),
        assets=MARTS_ASSET,
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    dagrun_timeout=timedelta(hours=12),
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="As-of business day"),
        "train": Param(None, type=["null", "boolean"], description="Force (true) / suppress (false) training"),
    },
    tags=["ulm", "ml"],
) as dag:

    @task(pool=POOL, doc_md="Train churn + LTV models on point-in-time snapshots; MLflow registry "
                            "challenger/champion (ml.train.train). Skipped on asset-triggered runs.")
    @user_errors_fail_fast
    def train(**context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        wanted, why = _should_train(context)
        if not wanted:
            raise AirflowSkipException(f"training not scheduled for this run ({why})")
        fn = _entry_point("ml.train", "train")
        return _jsonable(fn(as_of=as_of_from_context(context), warehouse=warehouse()))

    @task(pool=POOL, trigger_rule="none_failed",
          doc_md="Score every person with the @champion models into the warehouse (ml.score.score).")
    @user_errors_fail_fast
    def score(**context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        fn = _entry_point("ml.score", "score")
        missing = _missing_champions()
        if missing:
            raise AirflowSkipException(f"no @champion model yet for {', '.join(missing)}: nothing to score "
                                       "until a training run promotes one (param train=true)")
        return _jsonable(fn(as_of=as_of_from_context(context), warehouse=warehouse()))

    train() >> score()
