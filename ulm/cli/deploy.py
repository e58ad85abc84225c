"""`ulm deploy up | status | down`: the multi-process Airflow deployment on this machine (ulm/orchestration/deploy.py).

PostgreSQL and Redis from Debian packages, Airflow's api-server, scheduler, dag-processor, triggerer and a Celery
worker, and an MLflow tracking server; loopback only, login required, secrets generated into a private file.
"""
from __future__ import annotations

import json

import click

from ulm.cli import _parse_date, _target_option, friendly_errors, main


@main.group("deploy")
def deploy() -> None:
    """Run ULM as a real Airflow deployment here: PostgreSQL, Redis, Celery worker, MLflow server (no Docker).

    Ports: ULM_DEPLOY_PG_PORT (15432), ULM_DEPLOY_REDIS_PORT (16379), ULM_DEPLOY_AIRFLOW_PORT (8080),
    ULM_DEPLOY_MLFLOW_PORT (5000); ULM_DEPLOY_HOST (127.0.0.1) is where the UIs listen. State and logs:
    <data dir>/deploy. See docs/ORCHESTRATION.md#deployment.
    """


@deploy.command("up")
@friendly_errors
def deploy_up() -> None:
    """Start every service (or the ones not running), wait until the UIs answer, print where they are."""
    from ulm.orchestration import deploy as d

    st = d.up(progress=lambda msg: click.echo(f">> {msg}"))
    _print_status(st)


@deploy.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@friendly_errors
def deploy_status(as_json: bool) -> None:
    """Which services run (pid, address, health); exit 1 when any is down."""
    from ulm.orchestration import deploy as d

    st = d.status()
    if as_json:
        click.echo(json.dumps(st, indent=1))
    else:
        _print_status(st)
    raise SystemExit(0 if st["up"] else 1)


@deploy.command("trigger")
@click.option("--as-of", "as_of", required=True, callback=_parse_date, help="Business day, YYYY-MM-DD.")
@click.option("--dag", "dag_id", default="ulm_daily", show_default=True, help="DAG to trigger.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the run finished.")
@_target_option
@friendly_errors
def deploy_trigger(as_of, dag_id: str, wait: bool, target: str) -> None:
    """Trigger a run of one business day through the REST API (unpauses the DAG); prints its task states."""
    from ulm.orchestration import deploy as d

    api = d.client()
    api.set_paused(dag_id, False)
    run = api.trigger(dag_id, as_of, **({} if target == "duckdb" else {"target": target}))
    click.echo(f"triggered {dag_id} {run['dag_run_id']} (as of {as_of}{'' if target == 'duckdb' else ', ' + target})")
    if not wait:
        return
    last: list[str] = []

    def show(r: dict) -> None:
        if r["state"] != (last[-1] if last else None):
            click.echo(f"  {r['state']}")
            last.append(r["state"])

    run = api.wait(dag_id, run["dag_run_id"], on_poll=show)
    for ti in api.task_instances(dag_id, run["dag_run_id"]):
        if ti["state"] != "success":
            click.echo(f"  {ti['task_id']}: {ti['state']}")
    if run["state"] != "success":
        raise SystemExit(1)


@deploy.command("down")
@friendly_errors
def deploy_down() -> None:
    """Stop every service of the deployment (the data, metadata and logs stay)."""
    from ulm.orchestration import deploy as d

    res = d.down(progress=lambda msg: click.echo(f">> {msg}"))
    click.echo("nothing was running" if not res["stopped"] else f"deployment stopped ({len(res['stopped'])} services)")


def _print_status(st: dict) -> None:
    click.echo(f"ULM deployment in {st['root']}:")
    for name, s in st["services"].items():
        state = "up" if s["running"] else "DOWN"
        if s.get("healthy") is False and s["running"]:
            state = "starting"
        where = s.get("url") or s.get("address") or ""
        pid = f"pid {s['pid']}" if s.get("pid") else ""
        click.echo(f"  {name:<14} {state:<9} {where:<28} {pid}")
    login = st["login"]
    click.echo(f"  login          user {login['user']}, password: {login['password_key']} in {login['password_file']}")
