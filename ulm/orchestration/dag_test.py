"""The child process of ``ulm run``: ``dag.test()`` each planned DAG and write the states as JSON.

Started by :mod:`ulm.orchestration.runner` with the project-local Airflow environment (internal:
``python -m ulm.orchestration.dag_test PLAN_JSON RESULT_FILE``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _child_dag_test(plan: list[dict], result_file: Path) -> int:
    """In the child (Airflow env already set): ``dag.test()`` each planned DAG; write states as JSON."""
    from airflow.dag_processing.dagbag import DagBag

    from ulm.core import settings

    bag = DagBag(dag_folder=str(settings.settings().dags_dir))
    if bag.import_errors:
        first = next(iter(bag.import_errors.items()))
        result_file.write_text(json.dumps({p["dag_id"]: {"state": "failed", "tasks": {},
                                            "error": f"DAG import error in {first[0]}: {first[1]}"[:2000]}
                                           for p in plan}))
        return 1
    results: dict[str, Any] = {}
    for step in plan:
        after = step.get("after")
        if after and results.get(after, {}).get("state") != "success":
            continue
        t0 = time.perf_counter()
        dag = bag.get_dag(step["dag_id"])
        # The logical date is the wall-clock trigger time (the business day travels in the conf, param as_of), so
        # the UI shows real start/end times and durations, and every run is kept under its own run id: a rerun
        # of a day is a new run beside the earlier one (dag.test clears task instances of its logical date).
        started = datetime.now(timezone.utc)
        dr = dag.test(logical_date=started, run_conf=step["conf"])
        tis = dr.get_task_instances()
        results[step["dag_id"]] = {
            "state": str(getattr(dr.state, "value", dr.state)),
            "run_id": dr.run_id,
            "as_of": step["conf"]["as_of"],
            "started_at": started.isoformat(timespec="seconds"),
            "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 3),
            "tasks": {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis},
            "task_seconds": {ti.task_id: round(float(ti.duration or 0.0), 3) for ti in tis},
            "task_tries": {ti.task_id: int(ti.try_number or 1) for ti in tis},
        }
    result_file.write_text(json.dumps(results, indent=1))
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM (from ``ulm run``, or from the kernel when ``ulm run`` died): stop every process this run started
    (the Cosmos dbt producer runs in its own session), then exit, so no writer outlives the command."""
    import signal

    from ulm.orchestration.processes import kill_descendants

    def _handler(signum, frame):
        kill_descendants()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)
    _exit_with_parent()


def _exit_with_parent(poll: float = 0.5) -> None:
    """A watchdog thread: when ``ulm run`` is gone (re-parented to init), stop everything and exit.

    The kernel's SIGTERM (PR_SET_PDEATHSIG) is handled by Python only between bytecodes of the main thread; a long
    DuckDB statement (a set-based ingest, a dbt model) would delay it until the statement ends. DuckDB releases the
    GIL while it works, so this thread still runs and ends the process at once."""
    import threading

    from ulm.orchestration.processes import kill_descendants

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                kill_descendants()
                os._exit(128 + 15)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


QUIET_LOGGERS = ("great_expectations", "great_expectations.core", "matplotlib", "alembic", "urllib3", "httpx",
                 "mlflow", "arviz", "pymc", "pytensor", "py4j", "sqlalchemy.engine", "numexpr", "filelock",
                 "botocore", "git")


def _quiet_third_party() -> None:
    """Third-party libraries log at warning level and up in run logs (ULM's own and Airflow's stay at info)."""
    import logging
    import warnings

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        _stop_on_sigterm()
        _quiet_third_party()
        return _child_dag_test(json.loads(argv[0]), Path(argv[1]))
    print("usage: python -m ulm.orchestration.dag_test PLAN_JSON RESULT_FILE (internal, started by ulm run)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
