"""DAG integrity: both DAGs import with no errors or warnings, have the expected tasks, wiring, pools, docs.

The DAGs are parsed by a real Airflow ``DagBag`` in a child process with the project-local Airflow
environment of ``ulm run`` (Airflow reads its configuration once per process), from the manifest that
``ulm run`` produces with ``dbt parse``. The child reports the structure as JSON.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PARSE = r"""
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from airflow.dag_processing.dagbag import DagBag
    import os
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
out = {"import_errors": {k: v[-500:] for k, v in bag.import_errors.items()},
       "warnings": [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught], "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "fileloc": dag.fileloc,
        "doc_md": bool(dag.doc_md),
        "schedule": repr(dag.timetable),
        "max_active_runs": dag.max_active_runs,
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "pool": t.pool, "queue": t.queue,
                              "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
                              "retries": t.retries, "doc_md": bool(getattr(t, "doc_md", None)),
                              "operator": type(t).__name__,
                              "outlets": [getattr(o, "name", str(o)) for o in (t.outlets or [])],
                              "on_failure_callback": bool(t.on_failure_callback)}
                  for t in dag.tasks},
    }
json.dump(out, sys.stdout)
"""


def _context(tmp: Path):
    from ulm.core.context import RunContext

    return RunContext.create(warehouse=tmp / "warehouse.duckdb")


def _parse(tmp: Path, sequential: bool, **extra: str) -> dict:
    from ulm.orchestration.airflow_env import airflow_env

    env = airflow_env(_context(tmp), ULM_SEQUENTIAL_TASKS="1" if sequential else "0", **extra)
    proc = subprocess.run([sys.executable, "-c", PARSE], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory, monkeypatch_module) -> dict:
    from ulm.orchestration.airflow_env import airflow_env, dbt_manifest_path, ensure_manifest

    tmp = tmp_path_factory.mktemp("dags")
    monkeypatch_module.setenv("ULM_DATA_DIR", str(tmp))
    ensure_manifest(airflow_env(_context(tmp)))
    manifest = json.loads(dbt_manifest_path().read_text())
    models = sorted(n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model")
    # the default (one dbt task), Cosmos' watcher group as a deployment and under `ulm run`, the manual schedule
    return {"deployment": _parse(tmp, sequential=False),
            "watcher": _parse(tmp, sequential=False, ULM_DBT_EXECUTION_MODE="watcher"),
            "sequential": _parse(tmp, sequential=True, ULM_DBT_EXECUTION_MODE="watcher"),
            "manual": _parse(tmp, sequential=False, ULM_DAG_SCHEDULE="manual", ULM_CELERY_QUEUE="ulm-duckdb-host"),
            "models": models}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


MODES = ("deployment", "watcher", "sequential", "manual")


def test_dags_import_without_errors_or_warnings(parsed: dict) -> None:
    for mode in MODES:
        bag = parsed[mode]
        assert bag["import_errors"] == {}
        assert bag["warnings"] == []
        assert set(bag["dags"]) == {"ulm_daily", "ulm_ml"}
        assert all(d["doc_md"] for d in bag["dags"].values())


def _up(tasks: dict, task_id: str) -> list[str]:
    """Upstream tasks other than ``context`` (which every ULM task reads)."""
    return [u for u in tasks[task_id]["upstream"] if u != "context"]


def _daily(parsed: dict, mode: str = "deployment") -> dict:
    return parsed[mode]["dags"]["ulm_daily"]["tasks"]


def test_daily_pipeline_order_with_one_dbt_task(parsed: dict) -> None:
    tasks = _daily(parsed)
    assert [t for t in tasks if t.startswith("dbt_audit.")] == ["dbt_audit.dbt_build"]
    own = [t for t in tasks if t != "context"]
    assert tasks["context"]["upstream"] == [] and all("context" in tasks[t]["upstream"] for t in own)
    assert _up(tasks, "gate_landing") == ["ingest"] and _up(tasks, "erase") == ["gate_landing"]
    assert _up(tasks, "dbt_audit.dbt_build") == ["erase"] and _up(tasks, "gate_staging") == ["dbt_audit.dbt_build"]
    assert _up(tasks, "publish") == ["gate_marts"] and _up(tasks, "export_audiences") == ["publish"]
    build = tasks["dbt_audit.dbt_build"]
    assert build["pool"] == "ulm_duckdb" and build["retries"] >= 1  # a dead worker's build is retried
    # per-model visibility: every model is an outlet Asset of the build task
    assert sorted(build["outlets"]) == sorted(f"dbt.ulm.{m}" for m in parsed["models"])


def test_manual_schedule_runs_only_on_triggers_and_publishes(parsed: dict) -> None:
    dags = parsed["manual"]["dags"]
    assert "NullTimetable" in dags["ulm_daily"]["schedule"]
    assert "AssetTriggeredTimetable" in dags["ulm_ml"]["schedule"] and "Cron" not in dags["ulm_ml"]["schedule"]


def test_daily_pipeline_order(parsed: dict) -> None:
    tasks = _daily(parsed, "watcher")
    producer = "dbt_audit.dbt_producer_watcher"
    own = [t for t in tasks if not t.startswith("dbt_audit.") and t != "context"]
    assert tasks["context"]["upstream"] == [] and all("context" in tasks[t]["upstream"] for t in own)
    assert _up(tasks, "ingest") == []  # the run context is resolved once, first
    assert _up(tasks, "gate_landing") == ["ingest"]
    assert _up(tasks, "erase") == ["gate_landing"]  # erasure requests apply before anything is built
    assert tasks[producer]["upstream"] == ["erase"]
    assert "dbt_audit.dbt_producer_watcher_done" in tasks["gate_staging"]["upstream"]
    assert _up(tasks, "gate_marts") == ["gate_staging"]
    assert _up(tasks, "publish") == ["gate_marts"]
    assert _up(tasks, "export_audiences") == ["publish"]
    assert tasks["export_audiences"]["outlets"] == ["ulm_published_marts"]
    # every dbt task is upstream of Gate 2 (through the group's leaves): nothing is published before dbt ends
    assert _ancestors(tasks, "gate_staging") >= {t for t in tasks if t.startswith("dbt_audit.")}
    assert parsed["deployment"]["dags"]["ulm_daily"]["max_active_runs"] == 1


def test_every_dbt_model_is_a_task(parsed: dict) -> None:
    tasks = _daily(parsed, "watcher")
    for model in parsed["models"]:
        assert f"dbt_audit.{model}.run" in tasks or f"dbt_audit.{model}_run" in tasks, model


def test_single_duckdb_writer(parsed: dict) -> None:
    """Every task that writes DuckDB takes the 1-slot pool; the watcher sensors only read XCom."""
    tasks = _daily(parsed, "watcher")
    writers = ["ingest", "gate_landing", "erase", "dbt_audit.dbt_producer_watcher", "gate_staging", "gate_marts",
               "publish", "export_audiences"]
    assert all(tasks[t]["pool"] == "ulm_duckdb" for t in writers)
    sensors = [t for t, v in tasks.items() if v["operator"].endswith(("WatcherOperator", "WatcherSensor"))
               and v["operator"] != "DbtProducerWatcherOperator"]
    assert sensors and all(tasks[t]["pool"] != "ulm_duckdb" and tasks[t]["retries"] == 0 for t in sensors)
    assert tasks["dbt_audit.dbt_producer_watcher"]["retries"] == 0
    ml = parsed["deployment"]["dags"]["ulm_ml"]["tasks"]
    assert ml["train"]["pool"] == ml["score"]["pool"] == "ulm_duckdb"


def test_every_task_goes_to_the_ulm_queue(parsed: dict) -> None:
    """ULM_CELERY_QUEUE routes every task of both DAGs (sensors and the dbt group included) to the worker on the
    machine holding the DuckDB file; unset, Airflow's default queue."""
    for variant, queue in (("deployment", "default"), ("watcher", "default"), ("manual", "ulm-duckdb-host")):
        for dag_id, dag in parsed[variant]["dags"].items():
            assert {t["queue"] for t in dag["tasks"].values()} == {queue}, (variant, dag_id)


def test_retries_docs_and_failure_callbacks(parsed: dict) -> None:
    tasks = _daily(parsed)
    for name in ("ingest", "erase", "publish", "export_audiences"):
        assert 1 <= tasks[name]["retries"] <= 3
    for name in ("gate_landing", "gate_staging", "gate_marts"):
        assert tasks[name]["retries"] == 0  # a failed gate is deterministic: retrying would not help
    own = [t for t in tasks if not t.startswith("dbt_audit.")]
    assert all(tasks[t]["doc_md"] and tasks[t]["on_failure_callback"] for t in own)


def test_ml_dag_is_asset_and_time_scheduled(parsed: dict) -> None:
    ml = parsed["deployment"]["dags"]["ulm_ml"]
    assert "AssetOrTimeSchedule" in ml["schedule"] and "ulm_published_marts" in ml["schedule"]
    assert _up(ml["tasks"], "score") == ["train"]
    assert ml["tasks"]["score"]["trigger_rule"] == "none_failed"  # scores also when training is skipped


def test_sequential_mode_runs_the_producer_before_any_sensor(parsed: dict) -> None:
    tasks = _daily(parsed, "sequential")
    producer = "dbt_audit.dbt_producer_watcher"
    dbt = [t for t in tasks if t.startswith("dbt_audit.") and t != producer]
    assert all(producer in _ancestors(tasks, t) for t in dbt)
    # they read the producer's results even when the build failed, but never wait for a producer that
    # did not run (a failed Gate 1 leaves it upstream_failed)
    roots = [t for t in dbt if producer in tasks[t]["upstream"] and not t.endswith("_done")]
    assert roots and all(tasks[t]["trigger_rule"] == "all_done_min_one_success" for t in roots)


@pytest.mark.parametrize("mode", MODES)
def test_no_cycles(parsed: dict, mode: str) -> None:
    for dag in parsed[mode]["dags"].values():
        tasks = dag["tasks"]
        indegree = {t: len(v["upstream"]) for t, v in tasks.items()}
        downstream: dict[str, list[str]] = {t: [] for t in tasks}
        for t, v in tasks.items():
            for u in v["upstream"]:
                downstream[u].append(t)
        ready, seen = [t for t, n in indegree.items() if n == 0], 0
        while ready:
            t = ready.pop()
            seen += 1
            for d in downstream[t]:
                indegree[d] -= 1
                if indegree[d] == 0:
                    ready.append(d)
        assert seen == len(tasks)


def _ancestors(tasks: dict, task_id: str) -> set[str]:
    out, stack = set(), list(tasks[task_id]["upstream"])
    while stack:
        t = stack.pop()
        if t not in out:
            out.add(t)
            stack.extend(tasks[t]["upstream"])
    return out


# ---------------------------------------------------------------------------------- docker-compose.yml

ROOT = Path(__file__).resolve().parents[1]
LONG_RUNNING = ("postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker", "mlflow")


@pytest.fixture(scope="module")
def compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert set(LONG_RUNNING) | {"airflow-init"} <= set(services)
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]["test"]
        assert check and check[0] in ("CMD", "CMD-SHELL"), name
    for name, svc in services.items():  # every dependency names a service, with a meaningful condition
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)
    # published on the host's loopback only, as `ulm deploy` binds
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["mlflow"]["ports"] == ["127.0.0.1:5000:5000"]


def test_compose_environment_matches_the_code(compose: dict) -> None:
    from ulm.orchestration.airflow_env import POOL

    services = compose["services"]
    airflow = [s for n, s in services.items() if n.startswith("airflow-")]
    env = airflow[0]["environment"]
    assert all(s["environment"] == env for s in airflow)  # one shared definition
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False" and env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in airflow[0]["volumes"]}
    assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags"
    assert mounts[env["ULM_HOME"] + "/dbt_project"] == "./dbt_project"
    data = env["ULM_DATA_DIR"]
    assert mounts[data] == "ulm-data" and "ulm-data" in compose["volumes"]
    for key in ("ULM_WAREHOUSE", "ULM_LANDING_DIR", "AIRFLOW__COSMOS__CACHE_DIR"):
        assert env[key].startswith(data + "/"), key  # on the shared volume
    # variables the DAGs and ulm.orchestration.runner read are all set
    for key in ("ULM_PII_KEY", "ULM_DAG_START_DATE", "ULM_DAG_CATCHUP", "MLFLOW_TRACKING_URI"):
        assert key in env
    from ulm.core.settings import ENV_VARS

    for key in ("ULM_DAG_START_DATE", "ULM_DAG_CATCHUP", "ULM_WAREHOUSE", "ULM_DATA_DIR"):
        assert key in ENV_VARS  # read by the settings loader
    # the single-writer pool the DAGs use is created by airflow-init; dbt gets the PII key as its secret
    assert f"pools set {POOL} 1" in " ".join(services["airflow-init"]["command"])
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert 'DBT_ENV_SECRET_ULM_PII_KEY="${ULM_PII_KEY}"' in entrypoint and "dbt parse" in entrypoint
    # MLflow uses the second database of the shared Postgres, created by the init script
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].endswith("/mlflow")
    # no GenAI job runner in either deployment (six idle huey consumer processes otherwise)
    from ulm.orchestration import deploy

    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert deploy.mlflow_env(deploy.layout(), {"ULM_DEPLOY_PG_PASSWORD": "x"}, {})[
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "CREATE DATABASE mlflow" in (ROOT / "docker" / "postgres-init.sql").read_text()
    # no secret has a default: compose refuses to start without each one (`${NAME:?...}`)
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "ULM_PII_KEY", "ULM_DEPLOY_ADMIN_PASSWORD"):
        assert env[key].startswith("${" + key + ":?"), key
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "uv sync --frozen" in dockerfile and "docker/entrypoint.sh" in dockerfile


def test_compose_runs_what_ulm_deploy_runs(compose: dict, monkeypatch, tmp_path) -> None:
    """Same settings and same commands as `ulm deploy up` (ulm/orchestration/deploy.py), container names aside."""
    from ulm.orchestration import deploy

    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path))
    lay = deploy.layout()
    sec = {n: "x" for n in deploy.SECRET_NAMES}
    ours = deploy.deploy_env(lay, sec)
    env = compose["services"]["airflow-scheduler"]["environment"]
    same = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT", "ULM_DBT_EXECUTION_MODE",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY")
    assert {k: str(env[k]) for k in same} == {k: ours[k] for k in same}
    assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == ours[
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CELERY__BROKER_URL"):
        assert env[key].split("://")[0] == ours[key].split("://")[0], key  # same drivers
    commands = deploy._airflow_commands(lay)
    by_service = {"api-server": "airflow-apiserver", "scheduler": "airflow-scheduler",
                  "dag-processor": "airflow-dag-processor", "triggerer": "airflow-triggerer",
                  "worker": "airflow-worker"}
    for name, service in by_service.items():
        theirs = compose["services"][service]["command"]
        flags = [a for a in commands[name][1:] if a.startswith("-")]
        assert theirs[0] == "airflow" and theirs[1] == commands[name][1], name
        assert [a for a in theirs if a.startswith("-")] == flags, name
    assert compose["services"]["airflow-worker"]["command"][-2:] == ["--queues", "${ULM_CELERY_QUEUE:-default}"]
    assert commands["worker"][-2:] == ["--queues", "default"]
    mlflow = compose["services"]["mlflow"]["command"]
    assert [a for a in mlflow if a.startswith("--")] == [a for a in deploy.mlflow_command(lay, sec) if a.startswith("--")]
