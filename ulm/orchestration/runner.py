"""Run the Airflow DAGs in-process: ``ulm run`` and ``ulm backfill``.

:func:`run` executes DAG ``ulm_daily`` for the context's as-of business day with Airflow's ``dag.test()``
(tasks run in-process, sequentially, with real Airflow state, XCom, callbacks, Cosmos and GX), then DAG
``ulm_ml`` (scoring; training on the weekly training day). Both run in ONE child Python process so that
Airflow's configuration (read once, at import) is exactly the project-local one of
:func:`~ulm.orchestration.airflow_env.airflow_env`, whatever the caller imported. The child reports task
failures and skips back through a JSON-lines events file (the DAG callbacks write it) and the DAG states
through a result file.

:func:`backfill` runs day by day, in order, under one lock: incremental, like a catch-up. Both hold the
warehouse's write lock (:func:`ulm.warehouse.write_lock`) for the whole run.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.orchestration.airflow_env import airflow_env, ensure_airflow_db, ensure_manifest
from ulm.orchestration.processes import die_with_parent, sigterm_as_interrupt, stop
from ulm.warehouse import write_lock

log = logging.getLogger("ulm.orchestration")

DAILY_DAG = "ulm_daily"
ML_DAG = "ulm_ml"


def is_training_day(as_of: date) -> bool:
    """True when the weekly training cron fires on business day ``as_of``."""
    from croniter import croniter

    from ulm.orchestration.tasks import ml_train_schedule

    start = datetime.combine(as_of, datetime.min.time()) - timedelta(seconds=1)
    return croniter(ml_train_schedule(), start).get_next(datetime).date() == as_of


# ----------------------------------------------------------------------------------------------- running

class RunFailed(UlmError):
    """A DAG run that did not succeed; ``result`` holds what the run did (states, seconds, failures)."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def run(ctx: RunContext, *, ml: bool = True, train: bool | None = None, wait_seconds: float = 0.0) -> dict:
    """Run ``ulm_daily`` (then ``ulm_ml``) for the context's as-of business day on its warehouse.

    Returns ``{"as_of", "warehouse", "seconds", "dags": {dag_id: {"state", "run_id", "seconds",
    "tasks": {task_id: state}, "task_seconds": {task_id: seconds}, "failures": [...]}}}``. Raises UlmError naming the failed task and its reason
    (a failed gate lists each failed expectation); the published marts are then unchanged.
    ``train``: None = train when the weekly training schedule fires on ``as_of``; True/False force it.
    """
    as_of = ctx.require_as_of()
    if ctx.target != "duckdb" and _settings.settings().dbt_execution_mode != "build":
        raise UlmError(f"ulm run --target {ctx.target}: the dbt tasks run on other targets in execution mode "
                       f"'build' only (ULM_DBT_EXECUTION_MODE={_settings.settings().dbt_execution_mode})")
    with write_lock(ctx.warehouse, f"ulm run --as-of {as_of}", wait_seconds):
        return _run_locked(ctx, ml, train)


def backfill(start: date, end: date, ctx: RunContext, *, ml: bool = True, train: bool | None = None,
             wait_seconds: float = 0.0, progress=None) -> dict:
    """Run every business day from ``start`` to ``end`` (inclusive) in order; stop at the first failure.

    ``progress(line)`` (default: the log) gets "day N of M: <day>" before each day and its result, its seconds and
    the estimated time left after it.
    """
    if end < start:
        raise UlmError(f"backfill: END {end} is before START {start}")
    say = progress or log.info
    t0 = time.perf_counter()
    total = (end - start).days + 1
    days: dict[str, Any] = {}
    with write_lock(ctx.warehouse, f"ulm backfill {start} {end}", wait_seconds):
        for n in range(1, total + 1):
            day = start + timedelta(days=n - 1)
            say(f"day {n} of {total}: {day}")
            t_day = time.perf_counter()
            try:
                days[day.isoformat()] = res = _run_locked(ctx.with_(as_of=day), ml, train, dag_start=start)
            except RunFailed as exc:
                days[day.isoformat()] = exc.result
                say(f"day {n} of {total}: {day} failed after {time.perf_counter() - t_day:.0f} s")
                raise RunFailed(f"backfill stopped at {day} ({n - 1} day(s) done): {exc}",
                                {"start": start.isoformat(), "end": end.isoformat(), "runs": days}) from None
            except UlmError as exc:
                raise UlmError(f"backfill stopped at {day} ({n - 1} day(s) done): {exc}") from None
            elapsed = time.perf_counter() - t0
            eta = elapsed / n * (total - n)
            say(f"day {n} of {total}: {day} {run_line(res)}"
                + (f"; about {_duration(eta)} left" if n < total else f"; backfill done in {_duration(elapsed)}"))
    return {"start": start.isoformat(), "end": end.isoformat(), "days": len(days),
            "seconds": round(time.perf_counter() - t0, 3), "runs": days}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_line(result: dict) -> str:
    """One line per run: each DAG's state and seconds, and every skipped task with its reason."""
    parts = []
    for dag_id, res in result.get("dags", {}).items():
        text = f"{dag_id} {res['state']} in {res.get('seconds', 0):.0f} s"
        skips = skipped_tasks(res)
        if skips:
            text += " (" + "; ".join(f"{task} skipped: {why}" for task, why in skips.items()) + ")"
        parts.append(text)
    return ", ".join(parts)


def skipped_tasks(res: dict) -> dict[str, str]:
    """Each skipped task of a DAG run and why (the reason the task gave, else Airflow's trigger rule)."""
    reasons = {e["task_id"]: e["reason"] for e in res.get("skips", [])}
    return {task: reasons.get(task, "upstream skipped or not needed (trigger rule)")
            for task, state in res.get("tasks", {}).items() if state == "skipped"}


def _run_locked(ctx: RunContext, ml: bool, train: bool | None, dag_start: date | None = None) -> dict:
    t0 = time.perf_counter()
    as_of = ctx.require_as_of()
    # an in-process run starts the schedule with the day it runs (CDNOW's 1997 days run like any other); a
    # deployment's scheduler keeps ULM_DAG_START_DATE
    start = min(_settings.settings().dag_start_date, dag_start or as_of)
    env = airflow_env(ctx, ULM_DAG_START_DATE=start.isoformat())
    ensure_airflow_db(env)
    ensure_manifest(env)
    target = {} if ctx.target == "duckdb" else {"target": ctx.target}  # the default run's conf stays as it was
    plan = [{"dag_id": DAILY_DAG, "conf": {"as_of": as_of.isoformat(), **target}}]
    if ml:
        plan.append({"dag_id": ML_DAG, "after": DAILY_DAG,
                     "conf": {"as_of": as_of.isoformat(),
                              "train": is_training_day(as_of) if train is None else train, **target}})
    results = _run_child(plan, as_of, env)
    out = {"as_of": as_of.isoformat(), "warehouse": str(ctx.warehouse), "dags": results,
           "seconds": round(time.perf_counter() - t0, 3)}
    for dag_id, res in results.items():
        if res["state"] != "success":
            raise RunFailed(f"{dag_id} {as_of} failed: {_failure_line(res)}", out)
        ran = [t for t, state in res.get("tasks", {}).items() if state in ("success", "failed", "skipped")]
        if not ran:
            raise RunFailed(f"{dag_id} {as_of} ran no task (log: {res.get('log')})", out)
    for dag_id in (p["dag_id"] for p in plan):
        if dag_id not in results:
            raise RunFailed(f"{dag_id} {as_of} did not run (log: {results[DAILY_DAG].get('log')})", out)
    return out


def _failure_line(res: dict) -> str:
    if res.get("failures"):
        dbt = res.get("dbt_errors") or []
        parts = []
        for f in res["failures"]:
            if f["task_id"].endswith("dbt_producer_watcher") and dbt:
                parts.append(f"task {f['task_id']}: dbt build failed: " + "; ".join(dbt[:3])
                             + (f" and {len(dbt) - 3} more" if len(dbt) > 3 else ""))
            else:
                parts.append(f"task {f['task_id']}: {f['reason']}")
        return "; ".join(parts)
    failed = [t for t, s in res.get("tasks", {}).items() if s in ("failed", "upstream_failed")]
    return f"tasks not successful: {', '.join(failed) or res.get('error') or 'unknown'} (log: {res.get('log')})"


def _run_child(plan: list[dict], as_of: date, env: dict[str, str]) -> dict:
    """Run the plan in a child process with the Airflow env; stream task progress to the log."""
    logs = Path(env["AIRFLOW_HOME"]) / "logs" / "ulm-runs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    log_file = logs / f"{as_of.isoformat()}_{stamp}.log"
    with tempfile.TemporaryDirectory(prefix="ulm-run-") as tmp:
        result_file, events_file = Path(tmp) / "result.json", Path(tmp) / "events.jsonl"
        child_env = {**env, "ULM_TASK_EVENTS": str(events_file), "ULM_SEQUENTIAL_TASKS": "1"}
        cmd = [sys.executable, "-m", "ulm.orchestration.dag_test", json.dumps(plan), str(result_file)]
        with open(log_file, "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, cwd=env["ULM_HOME"], start_new_session=True,
                                    preexec_fn=die_with_parent)
            try:
                with sigterm_as_interrupt():
                    _stream(proc, fh, TaskLogSplitter(Path(env["AIRFLOW_HOME"]) / "logs"))
            finally:
                if proc.poll() is None:  # interrupted or killed: never leave the child writing
                    stop(proc)
        events = _read_events(events_file)
        if not result_file.exists():
            raise UlmError(f"the Airflow run for {as_of} crashed (exit {proc.returncode}); see {log_file}")
        results = json.loads(result_file.read_text())
    dbt_errors = dbt_errors_from_log(log_file)
    for dag_id, res in results.items():
        res["log"] = str(log_file)
        res["dbt_errors"] = dbt_errors if dag_id == DAILY_DAG else []
        res["failures"] = [e for e in events if e["dag_id"] == dag_id and e["event"] == "failed"]
        res["skips"] = [e for e in events if e["dag_id"] == dag_id and e["event"] == "skipped"]
    return results


_START = "[DAG TEST] starting task_id="
_RUNNING = "[DAG TEST] running task <TaskInstance: "
_END = "[DAG TEST] end task task_id="


class TaskLogSplitter:
    """Copies each task's lines of a ``dag.test`` run into the file Airflow's UI reads for that task try
    (``<AIRFLOW_HOME>/logs/dag_id=D/run_id=R/task_id=T/attempt=N.log``), so the grid's log tab shows it."""

    def __init__(self, log_root: Path):
        self.log_root = log_root
        self.task: str | None = None
        self.map_index = -1
        self.lines: list[str] = []
        self.target: Path | None = None
        self.attempts: dict[tuple, int] = {}
        self.written: list[Path] = []

    def feed(self, line: str) -> None:
        if _START in line:
            self._flush()
            rest = line.split(_START, 1)[1].split()
            self.task = rest[0]
            self.map_index = int(rest[1].split("=", 1)[1]) if len(rest) > 1 and "=" in rest[1] else -1
            self.lines, self.target = [line], None
            return
        if self.task is None:
            return
        self.lines.append(line)
        if self.target is None and _RUNNING in line:  # "<TaskInstance: dag.task run_id [state]>"
            ident = line.split(_RUNNING, 1)[1].split()
            dag_id = ident[0][: -len(self.task) - 1] if ident[0].endswith("." + self.task) else ident[0]
            key = (dag_id, ident[1], self.task, self.map_index)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            folder = self.log_root / f"dag_id={dag_id}" / f"run_id={ident[1]}" / f"task_id={self.task}"
            if self.map_index >= 0:
                folder = folder / f"map_index={self.map_index}"
            self.target = folder / f"attempt={self.attempts[key]}.log"
        if _END in line:
            self._flush()

    def _flush(self) -> None:
        if self.target is not None and self.lines:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.target.write_text("".join(self.lines), encoding="utf-8")
            self.written.append(self.target)
        self.task, self.lines, self.target = None, [], None

    def close(self) -> None:
        self._flush()


def _stream(proc: subprocess.Popen, fh, splitter: TaskLogSplitter | None = None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        fh.write(line)
        if splitter is not None:
            splitter.feed(line)
        if _START in line:
            log.info("task %s", line.split(_START, 1)[1].split()[0])
    proc.wait()
    if splitter is not None:
        splitter.close()


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def dbt_errors_from_log(log_file: Path) -> list[str]:
    """One line per failed dbt node of the run: ``model X: <the database's message>`` (from dbt's JSON events in the
    Cosmos producer's output), so a failed build names the model and the reason, not just an exit code."""
    out: list[str] = []
    if not log_file.exists():
        return out
    with open(log_file, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if '"RunResultError"' not in line and '"RunResultFailure"' not in line:
                continue
            try:
                event = json.loads(line[line.index("{"):].rsplit("}", 1)[0] + "}")
            except ValueError:
                continue
            if event.get("info", {}).get("name") != "RunResultError":
                continue
            node = event.get("data", {}).get("node_info", {})
            lines = [ln.strip() for ln in str(event["data"].get("msg", "")).splitlines() if ln.strip()]
            reason = lines[1] if len(lines) > 1 else (lines[0] if lines else "failed")
            out.append(f"{node.get('resource_type', 'node')} {node.get('node_name', '?')}: {reason}"[:500])
    return out
