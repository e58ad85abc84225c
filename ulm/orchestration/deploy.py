"""``ulm deploy up | status | down``: a real multi-process Airflow deployment on this machine, without Docker.

What runs (docs/ORCHESTRATION.md#deployment), all bound to loopback unless ``ULM_DEPLOY_HOST`` says otherwise:

* **PostgreSQL** (Debian package) - a cluster of its own under ``<data dir>/deploy/postgres``: Airflow's metadata
  database ``airflow``, MLflow's backend store ``mlflow``, Celery's result backend; TCP only, password auth;
* **Redis** (Debian package) - the Celery broker, password protected, data under ``<data dir>/deploy/redis``;
* **Airflow** - ``api-server`` (UI + REST API, login required), ``scheduler``, ``dag-processor``, ``triggerer`` and a
  **Celery worker** (``apache-airflow-providers-celery``), CeleryExecutor, state under ``<data dir>/deploy/airflow``;
* **MLflow** tracking server on the same PostgreSQL, artifacts under ``<data dir>/mlflow/artifacts``.

Secrets (PostgreSQL and Redis passwords, Fernet key, JWT secret, the admin password) come from the environment,
else from ``<data dir>/deploy/secrets.env`` (generated on first ``up``, mode 0600; ``data/`` is git-ignored). No
default password exists anywhere. The UI and the API require the login ``admin`` / the generated password
(``ulm deploy status`` prints where it is). DuckDB has one writer at a time: every writing task queues on the pool
``ulm_duckdb`` (1 slot) and each DAG has ``max_active_runs=1``.

Every process writes its log under ``<data dir>/deploy/logs`` and its pid under ``<data dir>/deploy/run``;
``status`` checks both pids and the health endpoints, ``down`` stops them in reverse order.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.orchestration.airflow_env import airflow_env, ensure_airflow_db, ensure_manifest, venv_bin

# PostgreSQL's binaries, run as user postgres when root: shared with the postgres dbt target's private cluster
from ulm.warehouse.postgres import as_postgres as _as_postgres
from ulm.warehouse.postgres import give_to_postgres as _give_to_postgres
from ulm.warehouse.postgres import pg_bin as _pg_bin

SECRET_NAMES = ("ULM_DEPLOY_PG_PASSWORD", "ULM_DEPLOY_REDIS_PASSWORD", "AIRFLOW__CORE__FERNET_KEY",
                "AIRFLOW__API_AUTH__JWT_SECRET", "ULM_DEPLOY_ADMIN_PASSWORD")
ADMIN = "admin"
PG_USER = "ulm"
# start order; `down` stops in reverse
AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer", "worker")
DAG_IDS = ("ulm_daily", "ulm_ml")


@dataclass(frozen=True)
class Layout:
    """Where a deployment keeps its state, and the ports it listens on."""

    root: Path
    host: str
    pg_port: int
    redis_port: int
    airflow_port: int
    mlflow_port: int
    worker_concurrency: int

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "passwords.json"

    @property
    def airflow_url(self) -> str:
        return f"http://{_client_host(self.host)}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{_client_host(self.host)}:{self.mlflow_port}"


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def layout(data_dir: Path | None = None) -> Layout:
    """The deployment of the data dir; ports and bind address from ``ULM_DEPLOY_*`` (ulm.core.settings)."""
    d = _settings.deploy_settings()
    return Layout(root=(data_dir or _settings.data_dir()) / "deploy", host=d.host, pg_port=d.pg_port,
                  redis_port=d.redis_port, airflow_port=d.airflow_port, mlflow_port=d.mlflow_port,
                  worker_concurrency=d.worker_concurrency)


# ----------------------------------------------------------------------------------------------- secrets

def _generate(name: str) -> str:
    if name == "AIRFLOW__CORE__FERNET_KEY":
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()
    return secrets.token_urlsafe(24)


def load_secrets(lay: Layout, *, create: bool) -> dict[str, str]:
    """Each secret from the environment, else from the secrets file (written with new values when ``create``)."""
    stored: dict[str, str] = {}
    if lay.secrets_file.exists():
        for line in lay.secrets_file.read_text(encoding="utf-8").splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                stored[k.strip()] = v.strip()
    missing = [n for n in SECRET_NAMES if not _settings.secret(n) and not stored.get(n)]
    if missing and not create:
        raise UlmError(f"no deployment secrets in {lay.secrets_file} (run `ulm deploy up` first)")
    if missing:
        stored.update({n: _generate(n) for n in missing})
        lay.root.mkdir(parents=True, exist_ok=True)
        body = "# ULM deployment secrets (generated; keep private, never commit). Environment variables win.\n"
        body += "".join(f"{n}={stored[n]}\n" for n in SECRET_NAMES if n in stored)
        _write_private(lay.secrets_file, body)
    return {n: _settings.secret(n) or stored[n] for n in SECRET_NAMES}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- environment

def pg_url(lay: Layout, sec: dict[str, str], db: str, driver: str = "postgresql+psycopg2") -> str:
    return f"{driver}://{PG_USER}:{sec['ULM_DEPLOY_PG_PASSWORD']}@127.0.0.1:{lay.pg_port}/{db}"


def deploy_env(lay: Layout, sec: dict[str, str], ctx: RunContext | None = None) -> dict[str, str]:
    """Environment of every Airflow process of the deployment (same settings as docker-compose.yml)."""
    env = airflow_env(ctx or RunContext.create())
    env.pop("ULM_SEQUENTIAL_TASKS", None)  # a real executor runs tasks side by side
    env.update({
        "AIRFLOW_HOME": str(lay.airflow_home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM") or "8",
        "AIRFLOW__CORE__FERNET_KEY": sec["AIRFLOW__CORE__FERNET_KEY"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{lay.airflow_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(lay.passwords_file),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url(lay, sec, "airflow"),
        "AIRFLOW__API__HOST": lay.host,
        "AIRFLOW__API__PORT": str(lay.airflow_port),
        "AIRFLOW__API__BASE_URL": lay.airflow_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["AIRFLOW__API_AUTH__JWT_SECRET"],
        "AIRFLOW__CELERY__BROKER_URL": f"redis://:{sec['ULM_DEPLOY_REDIS_PASSWORD']}@127.0.0.1:{lay.redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": pg_url(lay, sec, "airflow", "db+postgresql+psycopg2"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(lay.worker_concurrency),
        # Airflow's Celery defaults + the libraries every task imports, loaded once in the worker before it forks
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "ulm.orchestration.celery_config.CELERY_CONFIG",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "43200",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(lay.airflow_home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",  # its health server would listen on every interface
        # a task whose worker died is noticed within a minute and retried (or failed) instead of hanging
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": env.get(
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT") or "60",
        "MLFLOW_TRACKING_URI": lay.mlflow_url,
        "ULM_DBT_EXECUTION_MODE": _settings.settings().dbt_execution_mode,
    })
    return env


# ----------------------------------------------------------------------------------------------- binaries

def _redis_bin() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise UlmError("redis-server is not installed: `apt-get install redis-server` (the Debian package)")
    return found


# ----------------------------------------------------------------------------------------------- services

def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise UlmError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _start_postgres(lay: Layout, sec: dict[str, str]) -> None:
    if not (lay.pg_data / "PG_VERSION").exists():
        lay.pg_data.mkdir(parents=True, exist_ok=True)
        os.chmod(lay.pg_data, 0o700)
        pwfile = lay.root / "run" / "pg.pw"
        _write_private(pwfile, sec["ULM_DEPLOY_PG_PASSWORD"] + "\n")
        _give_to_postgres(pwfile)
        _give_to_postgres(lay.pg_data)
        try:
            _run(_as_postgres([_pg_bin("initdb"), "-D", str(lay.pg_data), "-U", PG_USER, "--pwfile", str(pwfile),
                               "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                               "--no-instructions"]), "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
    if _pg_running(lay):
        _ensure_databases(lay, sec)
        return
    if _port_open(lay.pg_port):
        raise UlmError(f"port {lay.pg_port} (PostgreSQL) is taken by another process: set ULM_DEPLOY_PG_PORT")
    log_file = lay.logs / "postgres.log"
    log_file.touch()
    _give_to_postgres(log_file)
    opts = f"-c listen_addresses=127.0.0.1 -p {lay.pg_port} -c unix_socket_directories='' -c max_connections=200"
    _run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(lay.pg_data), "-l", str(log_file), "-o", opts, "-w", "-t", "60",
                       "start"]), f"PostgreSQL start (log {log_file})")
    _ensure_databases(lay, sec)


def _pg_running(lay: Layout) -> bool:
    proc = subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(lay.pg_data), "status"]), capture_output=True)
    return proc.returncode == 0


def _ensure_databases(lay: Layout, sec: dict[str, str]) -> None:
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=lay.pg_port, user=PG_USER, dbname="postgres",
                           password=sec["ULM_DEPLOY_PG_PASSWORD"], connect_timeout=10)
    con.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with con.cursor() as cur:
            for db in ("airflow", "mlflow"):
                cur.execute("select 1 from pg_database where datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{db}" owner {PG_USER}')
    finally:
        con.close()


def _stop_postgres(lay: Layout) -> None:
    if (lay.pg_data / "PG_VERSION").exists() and _pg_running(lay):
        _run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(lay.pg_data), "-m", "fast", "-w", "stop"]), "PostgreSQL stop")


def _start_redis(lay: Layout, sec: dict[str, str]) -> None:
    if _alive(lay, "redis"):
        return
    if _port_open(lay.redis_port):
        raise UlmError(f"port {lay.redis_port} (Redis) is taken by another process: set ULM_DEPLOY_REDIS_PORT")
    lay.redis_dir.mkdir(parents=True, exist_ok=True)
    conf = lay.run / "redis.conf"  # the password in a 0600 file, not on a command line `ps` shows
    _write_private(conf, "\n".join([
        "bind 127.0.0.1", f"port {lay.redis_port}", f"dir {lay.redis_dir}", "appendonly yes", "daemonize no",
        "protected-mode yes", f"requirepass {sec['ULM_DEPLOY_REDIS_PASSWORD']}", ""]))
    _spawn(lay, "redis", [_redis_bin(), str(conf)], {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(lay.root)})
    _wait_until(lambda: _port_open(lay.redis_port), 30, "Redis", lay.logs / "redis.log", lay, "redis")


# ----------------------------------------------------------------------------------------------- processes

def _pid(lay: Layout, name: str) -> int | None:
    path = lay.run / f"{name}.pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(lay: Layout, name: str) -> bool:
    pid = _pid(lay, name)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie (exited, not yet reaped) or a dying one is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]  # "(comm)" may hold spaces
        if state in ("Z", "X"):
            return False
    return True


def _spawn(lay: Layout, name: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start a long-lived process in its own session (it outlives `ulm deploy up`); record its pid."""
    lay.logs.mkdir(parents=True, exist_ok=True)
    lay.run.mkdir(parents=True, exist_ok=True)
    with open(lay.logs / f"{name}.log", "a", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=env.get("ULM_HOME"))
    (lay.run / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _wait_until(check, timeout: float, what: str, log_file: Path, lay: Layout, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if name and not _alive(lay, name):
            raise UlmError(f"{what} exited during start: {_last_line(log_file)} (log {log_file})")
        time.sleep(1)
    raise UlmError(f"{what} did not come up within {timeout:.0f} s (log {log_file})")


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def _stop_pid(lay: Layout, name: str, timeout: float = 30) -> bool:
    pid = _pid(lay, name)
    if pid is None:
        return False
    stopped = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        stopped = True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    (lay.run / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _http_ok(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------- commands

def _airflow_commands(lay: Layout) -> dict[str, list[str]]:
    airflow = venv_bin("airflow")
    return {
        "api-server": [airflow, "api-server", "--host", lay.host, "--port", str(lay.airflow_port), "--workers", "1"],
        "scheduler": [airflow, "scheduler"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        # logs are files on this machine, read by the api-server directly: no log server on every interface
        "worker": [airflow, "celery", "worker", "--skip-serve-logs", "--concurrency", str(lay.worker_concurrency),
                   "--celery-hostname", "ulm-worker@%h", "--queues", _settings.settings().celery_queue],
    }


def mlflow_command(lay: Layout, sec: dict[str, str]) -> list[str]:
    """The MLflow server; its backend store URI (with the password) comes from the environment
    (``MLFLOW_BACKEND_STORE_URI``, see :func:`mlflow_env`), never from a command line `ps` shows."""
    artifacts = _settings.settings().mlflow_dir / "artifacts"
    return [venv_bin("mlflow"), "server", "--artifacts-destination", str(artifacts), "--serve-artifacts",
            "--host", lay.host, "--port", str(lay.mlflow_port), "--workers", "1"]


def mlflow_env(lay: Layout, sec: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    """The MLflow server's environment: no PII key (it never reads the warehouse), the backend store URI, and no job
    runner (its six huey consumer processes serve GenAI jobs ULM never submits: ~1 GB and CPU on a 2-core machine)."""
    out = {k: v for k, v in env.items() if k not in _secret_env_names() and not k.startswith("AIRFLOW__")}
    out["MLFLOW_BACKEND_STORE_URI"] = pg_url(lay, sec, "mlflow")
    out.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return out


def _write_passwords(lay: Layout, sec: dict[str, str]) -> None:
    """The admin's password for Airflow's auth manager: the generated one, never Airflow's default or a printed one."""
    _write_private(lay.passwords_file, json.dumps({ADMIN: sec["ULM_DEPLOY_ADMIN_PASSWORD"]}) + "\n")


def _check_free(lay: Layout, name: str, port: int, env_name: str) -> None:
    if _port_open(port, _client_host(lay.host)):
        raise UlmError(f"port {port} ({name}) is taken by another process: stop it or set {env_name}")


def up(*, progress=print) -> dict:
    """Start (or complete) the deployment; returns :func:`status` once everything answers."""
    lay = layout()
    sec = load_secrets(lay, create=True)
    for d in (lay.logs, lay.run, lay.airflow_home):
        d.mkdir(parents=True, exist_ok=True)
    progress(f"PostgreSQL on 127.0.0.1:{lay.pg_port} (data {lay.pg_data})")
    _start_postgres(lay, sec)
    progress(f"Redis on 127.0.0.1:{lay.redis_port}")
    _start_redis(lay, sec)
    env = deploy_env(lay, sec)
    _write_passwords(lay, sec)
    progress("Airflow metadata: airflow db migrate, pool ulm_duckdb (1 slot)")
    ensure_airflow_db(env)
    ensure_manifest(env)
    if not _alive(lay, "mlflow"):
        _check_free(lay, "MLflow", lay.mlflow_port, "ULM_DEPLOY_MLFLOW_PORT")
        progress(f"MLflow server on {lay.mlflow_url}")
        _spawn(lay, "mlflow", mlflow_command(lay, sec), mlflow_env(lay, sec, env))
    worker_log = lay.logs / "worker.log"
    worker_log_start = 0 if _alive(lay, "worker") or not worker_log.exists() else worker_log.stat().st_size
    for name, cmd in _airflow_commands(lay).items():
        if _alive(lay, name):
            continue
        if name == "api-server":
            _check_free(lay, "Airflow API", lay.airflow_port, "ULM_DEPLOY_AIRFLOW_PORT")
        progress(f"Airflow {name}")
        _spawn(lay, name, cmd, env)
    _wait_until(lambda: _http_ok(f"{lay.airflow_url}/api/v2/monitor/health"), 180, "Airflow api-server",
                lay.logs / "api-server.log", lay, "api-server")
    _wait_until(lambda: _http_ok(f"{lay.mlflow_url}/health"), 120, "MLflow server", lay.logs / "mlflow.log",
                lay, "mlflow")
    # "up" means a triggered run starts at once: scheduler, DAG processor and triggerer heartbeat, the worker
    # listens, and both DAGs are parsed
    progress("waiting for the scheduler, DAG processor, triggerer and worker to report ready")
    _wait_until(lambda: _components_healthy(lay), 180, "Airflow scheduler / dag-processor / triggerer",
                lay.logs / "scheduler.log", lay, "scheduler")
    _wait_until(lambda: _worker_ready(lay, worker_log_start), 180, "Celery worker", lay.logs / "worker.log", lay, "worker")
    _wait_until(lambda: _dags_parsed(lay, sec), 180, "DAG parsing", lay.logs / "dag-processor.log", lay,
                "dag-processor")
    return status()


def _components_healthy(lay: Layout) -> bool:
    try:
        with urllib.request.urlopen(f"{lay.airflow_url}/api/v2/monitor/health", timeout=3) as resp:
            health = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    return all((health.get(c) or {}).get("status") == "healthy" for c in ("scheduler", "dag_processor", "triggerer"))


def _worker_ready(lay: Layout, since: int) -> bool:
    """Celery logs ``<hostname> ready.`` once it consumes from the broker (looked for after byte ``since`` of its
    log, which is appended to across restarts)."""
    try:
        with open(lay.logs / "worker.log", "rb") as fh:
            fh.seek(since)
            return b" ready." in fh.read()
    except OSError:
        return False


def _dags_parsed(lay: Layout, sec: dict[str, str]) -> bool:
    from ulm.orchestration.api import AirflowApi, ApiError

    try:
        api = AirflowApi(lay.airflow_url, ADMIN, sec["ULM_DEPLOY_ADMIN_PASSWORD"])
        return all(api.get(f"/api/v2/dags/{dag_id}").get("dag_id") == dag_id for dag_id in DAG_IDS)
    except (ApiError, OSError):
        return False


def _secret_env_names() -> set[str]:
    return {_settings.PII_KEY_ENV, _settings.DBT_PII_KEY_ENV, _settings.SUPPRESSION_KEY_ENV}


def status() -> dict:
    """Each service: running or not, pid, URL; the login's user and where its password is."""
    lay = layout()
    services: dict[str, dict] = {
        "postgres": {"running": (lay.pg_data / "PG_VERSION").exists() and _pg_running(lay),
                     "address": f"127.0.0.1:{lay.pg_port}"},
        "redis": {"running": _alive(lay, "redis") and _port_open(lay.redis_port), "pid": _pid(lay, "redis"),
                  "address": f"127.0.0.1:{lay.redis_port}"},
    }
    for name in AIRFLOW_PROCESSES:
        services[name] = {"running": _alive(lay, name), "pid": _pid(lay, name)}
    services["api-server"]["healthy"] = _http_ok(f"{lay.airflow_url}/api/v2/monitor/health")
    services["api-server"]["url"] = lay.airflow_url
    services["mlflow"] = {"running": _alive(lay, "mlflow"), "pid": _pid(lay, "mlflow"), "url": lay.mlflow_url,
                          "healthy": _http_ok(f"{lay.mlflow_url}/health")}
    return {"root": str(lay.root), "services": services, "login": {"user": ADMIN, "password_file": str(lay.secrets_file),
                                                                   "password_key": "ULM_DEPLOY_ADMIN_PASSWORD"},
            "up": all(s["running"] for s in services.values())}


def down(*, progress=print) -> dict:
    """Stop every process of the deployment (workers first, PostgreSQL last). Data stays."""
    lay = layout()
    stopped = []
    for name in ("worker", "triggerer", "dag-processor", "scheduler", "api-server", "mlflow", "redis"):
        if _stop_pid(lay, name):
            progress(f"stopped {name}")
            stopped.append(name)
    if (lay.pg_data / "PG_VERSION").exists() and _pg_running(lay):
        _stop_postgres(lay)
        progress("stopped postgres")
        stopped.append("postgres")
    return {"stopped": stopped}


def client():
    """An :class:`~ulm.orchestration.api.AirflowApi` logged in as the deployment's admin."""
    from ulm.orchestration.api import AirflowApi

    lay = layout()
    sec = load_secrets(lay, create=False)
    return AirflowApi(lay.airflow_url, ADMIN, sec["ULM_DEPLOY_ADMIN_PASSWORD"])
