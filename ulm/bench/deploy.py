"""Benchmark helpers for the orchestration stages of `ulm bench` (run as ``python -m ulm.bench.deploy ...``).

- ``reset-audit WAREHOUSE``: drop the ``audit_*`` schemas, so the next build (plain, in-process DAG or deployed DAG)
  is a full build into empty audit schemas, like the first run of each runner.
- ``same-work --as-of DAY --landing DIR --out FILE``: every step of ``ulm_daily`` in one process, no Airflow (ingest,
  Gate 1, erasure, dbt build, Gates 2-3, publish, export): what the DAG's overhead is measured against.
- ``run --as-of DAY --out FILE``: one ``ulm_daily`` run in the deployment started by ``ulm deploy up`` (same
  ``ULM_DATA_DIR`` and ``ULM_DEPLOY_*`` ports), triggered through the REST API exactly like ``ulm deploy trigger``
  and timed from the trigger request to the run's end (scheduler latency, Celery queueing and task start-up
  included). The Celery worker's process tree is sampled for its peak memory: the tasks run there, not under this
  process.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import date, datetime
from pathlib import Path

import psutil

AUDIT_SCHEMAS = ("audit_staging", "audit_intermediate", "audit_marts")


def reset_audit(warehouse: Path) -> None:
    from ulm.warehouse import connect

    con = connect(warehouse)
    try:
        for schema in AUDIT_SCHEMAS:
            con.execute(f"drop schema if exists {schema} cascade")
    finally:
        con.close()


def same_work(as_of: date, landing: Path) -> dict:
    """Every step of ``ulm_daily`` in one process, without Airflow: ingest (``ensure_sources`` + the landing folder),
    Gate 1 on this run's loads, erasure, then ``ulm build`` (dbt into the audit schemas, Gates 2-3, publish, export).
    The yardstick of the orchestration overhead (D45)."""
    from datetime import datetime, timezone

    from ulm.core.context import RunContext
    from ulm.ingest import ingest_dir
    from ulm.privacy.erasure import erase
    from ulm.quality.gates import gate_landing
    from ulm.transform.dbt import ensure_sources
    from ulm.transform.wap import build_and_publish

    ctx = RunContext.create(as_of=as_of, landing_dir=landing)
    steps: dict[str, float] = {}

    def step(name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        steps[name] = round(time.perf_counter() - start, 2)

    since = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    step("ingest", lambda: (ensure_sources(ctx.warehouse),
                            ingest_dir(ctx.landing_dir, ctx.warehouse, until=as_of, progress=False),
                            ensure_sources(ctx.warehouse)))
    step("gate_landing", lambda: gate_landing(ctx, since))
    step("erase", lambda: erase(ctx.warehouse, ctx.data_dir))
    step("build_and_publish", lambda: build_and_publish(ctx))
    return {"steps": steps}


def _seconds(ti: dict) -> float:
    if ti.get("duration") is not None:
        return float(ti["duration"])
    if ti.get("start_date") and ti.get("end_date"):
        return (_ts(ti["end_date"]) - _ts(ti["start_date"])).total_seconds()
    return 0.0


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def deployed_run(as_of: date, dag_id: str = "ulm_daily", timeout: float = 3600) -> dict:
    """Trigger one run in the running deployment, wait for it, and say where its time went."""
    from ulm.bench import _tree_rss
    from ulm.core.errors import UlmError
    from ulm.orchestration import deploy as d

    lay = d.layout()
    worker_pid = d._pid(lay, "worker")
    if not worker_pid or not d._alive(lay, "worker"):
        raise UlmError(f"no Celery worker running in {lay.root}: start the deployment with `ulm deploy up`")
    worker = psutil.Process(worker_pid)
    api = d.client()
    api.set_paused(dag_id, False)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(worker))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        run = api.trigger(dag_id, as_of)
        run = api.wait(dag_id, run["dag_run_id"], timeout=timeout, poll=0.5)
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    tis = api.task_instances(dag_id, run["dag_run_id"])
    secs = {ti["task_id"]: round(_seconds(ti), 2) for ti in tis}
    starts = [_ts(ti["start_date"]) for ti in tis if ti.get("start_date")]
    ends = [_ts(ti["end_date"]) for ti in tis if ti.get("end_date")]
    dag_s = ((_ts(run["end_date"]) - _ts(run["start_date"])).total_seconds()
             if run.get("start_date") and run.get("end_date") else None)
    out = {
        "state": run["state"],
        "run_id": run["dag_run_id"],
        "deploy_run_s": round(wall, 2),
        "dag_s": round(dag_s, 2) if dag_s is not None else None,
        # first task start to last task end; the rest of dag_s is scheduling between tasks
        "tasks_span_s": round((max(ends) - min(starts)).total_seconds(), 2) if starts and ends else None,
        "task_sum_s": round(sum(secs.values()), 2),
        "dbt_group_s": round(sum(v for k, v in secs.items() if k.startswith("dbt_audit.")), 1),
        "dbt_producer_s": round(sum(v for k, v in secs.items()
                                    if k.endswith(("dbt_producer_watcher", ".dbt_build"))), 1),
        "gates_s": round(sum(v for k, v in secs.items() if k.startswith("gate")), 1),
        "tasks": len(secs),
        "failed_tasks": sorted(ti["task_id"] for ti in tis if ti["state"] not in ("success", "skipped")),
        "worker_peak_rss_mb": round(peak / 2**20, 1),
        "task_seconds": secs,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ulm.bench.deploy", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("reset-audit", help="drop the audit_* schemas of a warehouse (the next build is a full one)")
    p.add_argument("warehouse", type=Path)
    p = sub.add_parser("same-work", help="every step of ulm_daily in one process without Airflow (the yardstick)")
    p.add_argument("--as-of", required=True, type=date.fromisoformat)
    p.add_argument("--landing", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p = sub.add_parser("run", help="one ulm_daily run in the running deployment, timed from the REST trigger")
    p.add_argument("--as-of", required=True, type=date.fromisoformat)
    p.add_argument("--out", required=True, type=Path, help="JSON file with the run's timing")
    args = ap.parse_args(argv)
    if args.cmd == "reset-audit":
        reset_audit(args.warehouse)
        return 0
    if args.cmd == "same-work":
        res = same_work(args.as_of, args.landing)
        args.out.write_text(json.dumps(res, indent=1))
        print("same work without Airflow: " + ", ".join(f"{k} {v:.1f} s" for k, v in res["steps"].items()))
        return 0
    res = deployed_run(args.as_of)
    args.out.write_text(json.dumps(res, indent=1))
    print(f"ulm_daily {res['run_id']}: {res['state']} in {res['deploy_run_s']:.1f} s "
          f"(dbt {res['dbt_group_s']:.1f} s, gates {res['gates_s']:.1f} s, {res['tasks']} tasks, "
          f"worker peak {res['worker_peak_rss_mb']:.0f} MB)")
    if res["failed_tasks"]:
        print("not successful: " + ", ".join(res["failed_tasks"]))
    return 0 if res["state"] == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
