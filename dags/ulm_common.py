"""Shared pieces of the ULM DAGs: settings, the published-marts Asset, the as-of day, callbacks, task errors.

Holds no DAG (the DAG processor imports it and finds none). Imports stay light: DAG files are parsed often, so the ULM and
GX modules the tasks need are imported inside the tasks.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset

ROOT = Path(os.environ.get("ULM_HOME") or Path(__file__).resolve().parents[1])
if str(ROOT) not in sys.path:  # the DAG processor may not have the project on its path
    sys.path.insert(0, str(ROOT))

from ulm.config import param, warehouse_path  # noqa: E402
from ulm.errors import UlmError  # noqa: E402
from ulm.orchestrate import POOL, landing_dir_default, ml_train_schedule  # noqa: E402,F401

log = logging.getLogger("ulm.dags")

MARTS_ASSET = Asset(name="ulm_published_marts", uri="file:///ulm/warehouse/marts", group="ulm")
BUSINESS_TZ = param("business_timezone")
START_DATE = datetime.fromisoformat(os.environ.get("ULM_DAG_START_DATE", "2025-01-01"))
CATCHUP = os.environ.get("ULM_DAG_CATCHUP", "false").lower() in ("1", "true", "yes")


def warehouse() -> Path:
    return warehouse_path()


def warm_up_gate_imports() -> None:
    """Under ``ulm run`` every task runs in one process, one after the other (``dag.test``). Importing Great
    Expectations costs ~10-20 s (scipy, sqlalchemy); started in a background thread by ``ingest``, it overlaps the
    load (DuckDB work, GIL released) instead of all of it landing on Gate 1. With a real executor each task is its
    own process, so nothing is started there.
    """
    if os.environ.get("ULM_SEQUENTIAL_TASKS") != "1" or "great_expectations" in sys.modules:
        return
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("great_expectations",), name="gx-import-warm-up",
                     daemon=True).start()


def as_of_from_context(context: dict[str, Any]) -> date:
    """The run's as-of business day: param ``as_of`` if given, else the logical date in business time.

    For scheduled runs (daily data intervals in the business timezone) the logical date is the start of the
    business day being closed, so the as-of day is exactly the day the run covers.
    """
    from zoneinfo import ZoneInfo

    explicit = (context.get("params") or {}).get("as_of")
    if explicit:
        return date.fromisoformat(str(explicit))
    logical = context.get("logical_date") or (context.get("dag_run") and context["dag_run"].logical_date)
    if logical is None:
        raise UlmError("this run has no logical date: trigger it with the param as_of=YYYY-MM-DD")
    return logical.astimezone(ZoneInfo(BUSINESS_TZ)).date()


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown reason"
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:2000]


def _record(event: str, context: dict[str, Any], reason: str) -> None:
    """Append a task event to ``$ULM_TASK_EVENTS`` (set by ``ulm run``) so the CLI can print the reason."""
    path = os.environ.get("ULM_TASK_EVENTS")
    if not path:
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
    _record("skipped", context, _one_line(context.get("exception")))


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ulm",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=6),
    "on_failure_callback": on_task_failure,
    "on_skipped_callback": on_task_skipped,
}


def user_errors_fail_fast(fn: Callable) -> Callable:
    """Expected failures (contract, gate, lock) fail the task at once; anything else may be retried."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return fn(*args, **kwargs)
        except UlmError as exc:
            raise AirflowFailException(_one_line(exc)) from exc

    return wrapper


def run_id_of(context: dict[str, Any]) -> str:
    return str(context["run_id"])
