"""Run the Airflow DAGs locally: ``ulm run``, ``ulm backfill`` and ``ulm ui``.

* :func:`run` executes DAG ``ulm_daily`` for one as-of business day with Airflow's ``dag.test()`` (tasks run
  in-process, sequentially, with real Airflow state, XCom, callbacks, Cosmos and GX), then DAG ``ulm_ml``
  (scoring; training on the weekly training day). Both run in ONE child Python process so that Airflow's
  configuration (read once, at import) is exactly the project-local one below, whatever the caller imported.
* :func:`backfill` runs :func:`run` day by day, in order, under one lock: incremental, like a catch-up.
* :func:`ui` starts ``airflow standalone`` and ``mlflow ui``, prints their URLs and the admin credentials,
  and stops both on Ctrl-C.

Airflow state is project-local: ``AIRFLOW_HOME = data/airflow`` (SQLite metadata, migrated on first use),
DAGs from ``<repo>/dags``, no example DAGs, Cosmos telemetry off, Cosmos cache under ``data/cosmos_cache``.

Only one run may write at a time: :func:`run_lock` takes an exclusive ``flock`` on ``data/.ulm.lock``
(holding the owner's pid and what it runs). A second run fails at once with a message naming that pid, or
waits up to ``wait_seconds``. The kernel releases the lock if the owner dies, so a crash never wedges it.
The DAG itself keeps DuckDB single-writer inside a deployment with the ``ulm_duckdb`` pool (1 slot).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ulm.config import data_dir, project_root
from ulm.errors import UlmError

log = logging.getLogger("ulm.orchestrate")

DAILY_DAG = "ulm_daily"
ML_DAG = "ulm_ml"
POOL = "ulm_duckdb"
LOCK_NAME = ".ulm.lock"
DEFAULT_ML_TRAIN_CRON = "0 4 * * 1"  # Mondays 04:00 business time; override: vars.ulm.ml_train_schedule


# ----------------------------------------------------------------------------------------------- settings

def airflow_home() -> Path:
    return data_dir() / "airflow"


def landing_dir_default() -> Path:
    env = os.environ.get("ULM_LANDING_DIR")
    return Path(env).resolve() if env else data_dir() / "landing"


def ml_train_schedule() -> str:
    """Cron of the weekly training run (business timezone)."""
    from ulm.config import params

    return str(params().get("ml_train_schedule", DEFAULT_ML_TRAIN_CRON))


def is_training_day(as_of: date) -> bool:
    """True when the weekly training cron fires on business day ``as_of``."""
    from croniter import croniter

    start = datetime.combine(as_of, datetime.min.time()) - timedelta(seconds=1)
    return croniter(ml_train_schedule(), start).get_next(datetime).date() == as_of


def airflow_env(warehouse: Path, landing_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for an Airflow process working on ``warehouse`` (project-local state, no telemetry)."""
    from ulm.keys import ensure_local_pii_key

    ensure_local_pii_key()
    home = airflow_home()
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root() / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(data_dir() / "cosmos_cache"),
        "AIRFLOW__COSMOS__PROPAGATE_LOGS": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "ULM_HOME": str(project_root()),
        "ULM_DATA_DIR": str(data_dir()),
        "ULM_WAREHOUSE": str(Path(warehouse).resolve()),
        "ULM_LANDING_DIR": str(Path(landing_dir).resolve() if landing_dir else landing_dir_default()),
        "DBT_ENV_SECRET_ULM_PII_KEY": os.environ["ULM_PII_KEY"],
        "PYTHONPATH": os.pathsep.join(p for p in (str(project_root()), os.environ.get("PYTHONPATH")) if p),
        # the venv's dbt / airflow executables, also when the caller did not activate it
        "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH")) if p),
    })
    env.update(extra)
    return env


def _airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def ensure_airflow_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` on first use (and after an Airflow upgrade), then the single-writer pool."""
    import importlib.metadata

    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".ulm-migrated"
    version = importlib.metadata.version("apache-airflow-core")
    if marker.exists() and marker.read_text().strip() == version and (home / "airflow.db").exists():
        return
    log.info("initialising Airflow metadata in %s (first use, ~20 s)", home)
    for cmd in ([_airflow_bin(), "db", "migrate"],
                [_airflow_bin(), "pools", "set", POOL, "1", "ULM: one DuckDB writer at a time"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UlmError(f"{' '.join(cmd[1:])} failed in {home}: {tail[0]}")
    marker.write_text(version)


def dbt_manifest_path() -> Path:
    """The manifest the DAG renders its dbt tasks from (``dbt parse`` output, see :func:`ensure_manifest`)."""
    return data_dir() / "dbt" / "target" / "manifest.json"


def ensure_manifest(env: dict[str, str]) -> Path:
    """``dbt parse`` into ``data/dbt/target`` so DAG parsing never has to run ``dbt ls`` (partial parse: fast)."""
    from ulm.config import dbt_project_dir

    target = dbt_manifest_path().parent
    project = dbt_project_dir()
    if _newer_than_sources(dbt_manifest_path(), project):
        return dbt_manifest_path()
    cmd = [str(Path(sys.executable).with_name("dbt")), "parse", "--project-dir", str(project),
           "--profiles-dir", str(project), "--target-path", str(target), "--log-path", str(target.parent / "logs"),
           "--no-use-colors", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(project))
    if proc.returncode != 0 or not dbt_manifest_path().exists():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise UlmError(f"dbt parse of {project} failed: {lines[-1] if lines else 'no output'}")
    return dbt_manifest_path()


def _newer_than_sources(manifest: Path, project: Path) -> bool:
    """The manifest is newer than every file of the dbt project (so parsing again would change nothing)."""
    if not manifest.exists():
        return False
    built = manifest.stat().st_mtime
    return all(p.stat().st_mtime < built for p in project.rglob("*")
               if p.is_file() and not {"target", "logs", "dbt_packages"} & set(p.relative_to(project).parts))


# ----------------------------------------------------------------------------------------------- locking

def lock_path() -> Path:
    return data_dir() / LOCK_NAME


@contextlib.contextmanager
def run_lock(what: str, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Exclusive lock on ``data/.ulm.lock`` for a writing run; UlmError naming the holder when busy."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _lock_holder(path)
                    raise UlmError(
                        f"another ULM run is writing the warehouse ({holder}; lock {path}); "
                        f"wait for it to finish or pass a wait time") from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "what": what,
                                 "since": datetime.now().isoformat(timespec="seconds")}).encode())
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {info.get('pid', '?')}: {info.get('what', '?')} since {info.get('since', '?')}"


# ----------------------------------------------------------------------------------------------- running

def run(as_of: date, warehouse: Path, *, landing_dir: Path | None = None, ml: bool = True,
        train: bool | None = None, wait_seconds: float = 0.0) -> dict:
    """Run ``ulm_daily`` (then ``ulm_ml``) for business day ``as_of`` on ``warehouse``.

    Returns ``{"as_of", "warehouse", "seconds", "dags": {dag_id: {"state", "run_id", "seconds",
    "tasks": {task_id: state}, "task_seconds": {task_id: seconds}, "failures": [...]}}}``. Raises UlmError naming the failed task and its reason
    (a failed gate lists each failed expectation); the published marts are then unchanged.
    ``train``: None = train when the weekly training schedule fires on ``as_of``; True/False force it.
    """
    with run_lock(f"ulm run --as-of {as_of}", wait_seconds):
        return _run_locked(as_of, Path(warehouse), landing_dir, ml, train)


def backfill(start: date, end: date, warehouse: Path, *, landing_dir: Path | None = None, ml: bool = True,
             train: bool | None = None, wait_seconds: float = 0.0) -> dict:
    """Run every business day from ``start`` to ``end`` (inclusive) in order; stop at the first failure."""
    if end < start:
        raise UlmError(f"backfill: END {end} is before START {start}")
    t0 = time.perf_counter()
    days: dict[str, Any] = {}
    with run_lock(f"ulm backfill {start} {end}", wait_seconds):
        day = start
        while day <= end:
            try:
                days[day.isoformat()] = _run_locked(day, Path(warehouse), landing_dir, ml, train)
            except UlmError as exc:
                raise UlmError(f"backfill stopped at {day} ({len(days)} day(s) done): {exc}") from None
            day += timedelta(days=1)
    return {"start": start.isoformat(), "end": end.isoformat(), "days": len(days),
            "seconds": round(time.perf_counter() - t0, 3), "runs": days}


def _run_locked(as_of: date, warehouse: Path, landing_dir: Path | None, ml: bool, train: bool | None) -> dict:
    t0 = time.perf_counter()
    env = airflow_env(warehouse, landing_dir)
    ensure_airflow_db(env)
    ensure_manifest(env)
    plan = [{"dag_id": DAILY_DAG, "conf": {"as_of": as_of.isoformat()}}]
    if ml:
        plan.append({"dag_id": ML_DAG, "after": DAILY_DAG,
                     "conf": {"as_of": as_of.isoformat(),
                              "train": is_training_day(as_of) if train is None else train}})
    results = _run_child(plan, as_of, env)
    out = {"as_of": as_of.isoformat(), "warehouse": str(warehouse), "dags": results,
           "seconds": round(time.perf_counter() - t0, 3)}
    for dag_id, res in results.items():
        if res["state"] != "success":
            raise UlmError(f"{dag_id} {as_of} failed: {_failure_line(res)}")
    return out


def _failure_line(res: dict) -> str:
    if res.get("failures"):
        return "; ".join(f"task {f['task_id']}: {f['reason']}" for f in res["failures"])
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
        cmd = [sys.executable, "-m", "ulm.orchestrate", "_dag-test", json.dumps(plan), str(result_file)]
        with open(log_file, "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, cwd=str(project_root()), start_new_session=True)
            try:
                with _sigterm_as_interrupt():
                    _stream(proc, fh)
            finally:
                if proc.poll() is None:  # interrupted or killed: never leave the child writing
                    _stop(proc)
        events = _read_events(events_file)
        if not result_file.exists():
            raise UlmError(f"the Airflow run for {as_of} crashed (exit {proc.returncode}); see {log_file}")
        results = json.loads(result_file.read_text())
    for dag_id, res in results.items():
        res["log"] = str(log_file)
        res["failures"] = [e for e in events if e["dag_id"] == dag_id and e["event"] == "failed"]
        res["skips"] = [e for e in events if e["dag_id"] == dag_id and e["event"] == "skipped"]
    return results


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to ``ulm run`` stops its Airflow child too (as Ctrl-C does)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stream(proc: subprocess.Popen, fh) -> None:
    marker = "[DAG TEST] starting task_id="
    assert proc.stdout is not None
    for line in proc.stdout:
        fh.write(line)
        if marker in line:
            log.info("task %s", line.split(marker, 1)[1].split()[0])
    proc.wait()


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------- child side

def _child_dag_test(plan: list[dict], result_file: Path) -> int:
    """In the child (Airflow env already set): ``dag.test()`` each planned DAG; write states as JSON."""
    from zoneinfo import ZoneInfo

    from airflow.dag_processing.dagbag import DagBag

    from ulm.config import param

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        first = next(iter(bag.import_errors.items()))
        result_file.write_text(json.dumps({p["dag_id"]: {"state": "failed", "tasks": {},
                                            "error": f"DAG import error in {first[0]}: {first[1]}"[:2000]}
                                           for p in plan}))
        return 1
    tz = ZoneInfo(param("business_timezone"))
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


# ----------------------------------------------------------------------------------------------- ui

def ui(*, airflow_port: int = 8080, mlflow_port: int = 5000) -> None:
    """Start ``airflow standalone`` + ``mlflow ui``; print URLs and admin credentials; stop both on Ctrl-C."""
    from ulm.config import warehouse_path

    env = airflow_env(warehouse_path(), AIRFLOW__CORE__PARALLELISM="4",
                      AIRFLOW__API__PORT=str(airflow_port),
                      AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True")
    ensure_airflow_db(env)
    mlflow_dir = data_dir() / "mlflow"
    (mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    logs = airflow_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if the caller ignored SIGINT
    try:
        procs.append(_spawn([_airflow_bin(), "standalone"], env, logs / "standalone.log"))
        procs.append(_spawn([str(Path(sys.executable).with_name("mlflow")), "ui",
                             "--backend-store-uri", os.environ.get("MLFLOW_TRACKING_URI",
                                                                   f"sqlite:///{mlflow_dir / 'mlflow.db'}"),
                             "--default-artifact-root", str(mlflow_dir / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                            env, logs / "mlflow-ui.log"))
        user, password = _wait_for_credentials(procs[0])
        print(f"Airflow UI : http://localhost:{airflow_port}  (user {user}, password {password})", flush=True)
        print(f"MLflow UI  : http://localhost:{mlflow_port}")
        print(f"logs       : {logs / 'standalone.log'}, {logs / 'mlflow-ui.log'}")
        print("Ctrl-C stops both.", flush=True)
        with _sigterm_as_interrupt():
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        dead = next(p for p in procs if p.poll() is not None)
        raise UlmError(f"{Path(dead.args[0]).name} exited with {dead.returncode}; see {logs}")
    except KeyboardInterrupt:
        print("stopping Airflow and MLflow ...", flush=True)
    finally:
        for p in procs:
            _stop(p)


def _spawn(cmd: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen:
    fh = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_credentials(standalone: subprocess.Popen, timeout: float = 180.0) -> tuple[str, str]:
    """Admin user/password that ``airflow standalone`` writes under AIRFLOW_HOME (simple auth manager)."""
    path = airflow_home() / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and standalone.poll() is None:
        if path.exists() and path.read_text().strip():
            creds = json.loads(path.read_text())
            user, password = next(iter(creds.items()))
            return user, password
        time.sleep(1)
    return "admin", f"(see {path})"


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "_dag-test":
        return _child_dag_test(json.loads(argv[1]), Path(argv[2]))
    print("usage: python -m ulm.orchestrate _dag-test PLAN_JSON RESULT_FILE (internal)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
