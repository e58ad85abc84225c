"""The child process of ``ulm run``: ``dag.test()`` each planned DAG and write the states as JSON.

Started by :mod:`ulm.orchestration.runner` with the project-local Airflow environment (internal:
``python -m ulm.orchestration.dag_test PLAN_JSON RESULT_FILE``).
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any


def _child_dag_test(plan: list[dict], result_file: Path) -> int:
    """In the child (Airflow env already set): ``dag.test()`` each planned DAG; write states as JSON."""
    from zoneinfo import ZoneInfo

    from airflow.dag_processing.dagbag import DagBag

    from ulm.core import settings

    bag = DagBag(dag_folder=str(settings.settings().dags_dir))
    if bag.import_errors:
        first = next(iter(bag.import_errors.items()))
        result_file.write_text(json.dumps({p["dag_id"]: {"state": "failed", "tasks": {},
                                            "error": f"DAG import error in {first[0]}: {first[1]}"[:2000]}
                                           for p in plan}))
        return 1
    tz = ZoneInfo(settings.param("business_timezone"))
    results: dict[str, Any] = {}
    for step in plan:
        after = step.get("after")
        if after and results.get(after, {}).get("state") != "success":
            continue
        t0 = time.perf_counter()
        dag = bag.get_dag(step["dag_id"])
        as_of = date.fromisoformat(step["conf"]["as_of"])
        logical = datetime.combine(as_of, datetime.min.time(), tzinfo=tz)
        dr = dag.test(logical_date=logical, run_conf=step["conf"])
        results[step["dag_id"]] = {
            "state": str(getattr(dr.state, "value", dr.state)),
            "run_id": dr.run_id,
            "seconds": round(time.perf_counter() - t0, 3),
            "tasks": {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dr.get_task_instances()},
            "task_seconds": {ti.task_id: round(float(ti.duration or 0.0), 3) for ti in dr.get_task_instances()},
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


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        _stop_on_sigterm()
        return _child_dag_test(json.loads(argv[0]), Path(argv[1]))
    print("usage: python -m ulm.orchestration.dag_test PLAN_JSON RESULT_FILE (internal, started by ulm run)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
