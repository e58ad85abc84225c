"""What `ulm run` / `ulm backfill` tell: per-task log files where Airflow's UI reads them, skip reasons, progress."""
from __future__ import annotations

from datetime import date

import pytest

from ulm.orchestration import runner

RUN = "manual__2026-12-02T03:00:00+00:00"


def _lines(dag: str, task: str, body: list[str], run_id: str = RUN) -> list[str]:
    return ([f"[info] [DAG TEST] starting task_id={task} map_index=-1\n",
             f"[info] [DAG TEST] running task <TaskInstance: {dag}.{task} {run_id} [scheduled]>\n"]
            + body + [f"[info] [DAG TEST] end task task_id={task} map_index=-1\n"])


def test_the_child_log_is_split_into_the_files_the_ui_reads(tmp_path) -> None:
    split = runner.TaskLogSplitter(tmp_path)
    lines = ["[info] filling the DagBag\n"]  # before the first task: the run log only
    lines += _lines("ulm_daily", "ingest", ["loaded 3 files\n"])
    lines += _lines("ulm_daily", "dbt_audit.dbt_build", ["model a success\n"])
    lines += _lines("ulm_daily", "dbt_audit.dbt_build", ["retried\n"])  # a second try of the same task
    lines += _lines("ulm_ml", "context", ["as of 2025-12-31\n"], run_id="manual__2026-12-02T03:05:00+00:00")
    for line in lines:
        split.feed(line)
    split.close()
    base = tmp_path / "dag_id=ulm_daily" / f"run_id={RUN}"
    ingest = (base / "task_id=ingest" / "attempt=1.log").read_text()
    assert "loaded 3 files" in ingest and "filling the DagBag" not in ingest and "model a" not in ingest
    assert "model a success" in (base / "task_id=dbt_audit.dbt_build" / "attempt=1.log").read_text()
    assert "retried" in (base / "task_id=dbt_audit.dbt_build" / "attempt=2.log").read_text()
    ml = tmp_path / "dag_id=ulm_ml" / "run_id=manual__2026-12-02T03:05:00+00:00" / "task_id=context" / "attempt=1.log"
    assert "as of 2025-12-31" in ml.read_text()
    assert len(split.written) == 4


def test_a_skipped_task_reports_its_reason() -> None:
    res = {"dags": {"ulm_daily": {"state": "success", "seconds": 61.2, "tasks": {"ingest": "success"}, "skips": []},
                    "ulm_ml": {"state": "success", "seconds": 3.4, "tasks": {"train": "skipped", "score": "success"},
                               "skips": [{"task_id": "train", "reason": "training not scheduled for this run"}]}}}
    assert runner.skipped_tasks(res["dags"]["ulm_ml"]) == {"train": "training not scheduled for this run"}
    line = runner.run_line(res)
    assert line == ("ulm_daily success in 61 s, ulm_ml success in 3 s "
                    "(train skipped: training not scheduled for this run)")
    # a task Airflow skipped by its trigger rule says so instead of "unknown reason"
    res["dags"]["ulm_ml"]["skips"] = []
    assert "trigger rule" in runner.skipped_tasks(res["dags"]["ulm_ml"])["train"]


def test_backfill_prints_day_n_of_m_each_result_and_the_time_left(monkeypatch, tmp_path) -> None:
    from ulm.core.context import RunContext

    def fake_run(ctx, ml, train, dag_start=None):
        return {"dags": {"ulm_daily": {"state": "success", "seconds": 1.0, "tasks": {}, "skips": []}}}

    monkeypatch.setattr(runner, "_run_locked", fake_run)
    said: list[str] = []
    ctx = RunContext.create(warehouse=tmp_path / "wh.duckdb", as_of=date(2025, 12, 1))
    out = runner.backfill(date(2025, 12, 1), date(2025, 12, 3), ctx, progress=said.append)
    assert out["days"] == 3
    assert said[0] == "day 1 of 3: 2025-12-01"
    assert said[1].startswith("day 1 of 3: 2025-12-01 ulm_daily success in 1 s; about ") and said[1].endswith("left")
    assert said[-1].startswith("day 3 of 3: 2025-12-03 ulm_daily success") and "backfill done in" in said[-1]


def test_backfill_refuses_an_end_before_the_start(tmp_path) -> None:
    from ulm.core.context import RunContext
    from ulm.core.errors import UlmError

    with pytest.raises(UlmError, match="before START"):
        runner.backfill(date(2025, 12, 3), date(2025, 12, 1), RunContext.create(warehouse=tmp_path / "w.duckdb"))
