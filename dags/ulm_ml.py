"""
### ulm_ml - training and scoring (docs/METRICS.md#machine-learning)

Scheduled two ways (`AssetOrTimeSchedule`):

* **after every publish** - the Asset `ulm_published_marts` (emitted by `ulm_daily.export_audiences`, its
  extra carries the as-of day) triggers a run that **scores** with the `@champion` models (and first **trains**
  when no `@champion` exists yet);
* **weekly** - the cron `ml_train_schedule` (default Mondays 04:00 business time) triggers a run that
  **trains** (new challengers, promotion decided and recorded by `ulm.ml`) and then scores.

`ULM_DAG_SCHEDULE=manual` drops the cron: runs only follow publishes and triggers.

Param `train` forces (true) or suppresses (false) training on a manual run; `as_of` sets the day (default:
the logical date's business day). ML reads the published marts. Both tasks write the warehouse, so both run
in pool `ulm_duckdb`. What each task does: `ulm/orchestration/tasks.py`.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param

from ulm.core.context import TARGETS
from ulm.orchestration import tasks as t

with DAG(
    dag_id="ulm_ml",
    description="Weekly training + scoring after every publish of the marts",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(t.ml_train_schedule(), timezone=t.BUSINESS_TZ),
        assets=t.MARTS_ASSET,
    ) if t.scheduled() else t.MARTS_ASSET,
    start_date=t.dag_settings()["start_date"],
    catchup=False,
    max_active_runs=1,
    default_args={**t.DEFAULT_ARGS, "retries": 1},
    dagrun_timeout=timedelta(hours=12),
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="As-of business day"),
        "train": Param(None, type=["null", "boolean"], description="Force (true) / suppress (false) training"),
        "target": Param(None, type=["null", "string"], enum=[None, *TARGETS],
                        description="dbt target (default duckdb, or the triggering publish's)"),
    },
    tags=["ulm", "ml"],
) as dag:
    run = t.context_task()
    t.train(run) >> t.score(run)
