"""``ulm ui``: the Airflow UI (``airflow standalone``) and the MLflow UI, with URLs and the admin login."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.orchestration.airflow_env import airflow_env, ensure_airflow_db, venv_bin
from ulm.orchestration.processes import sigterm_as_interrupt, spawn, stop


def ui(*, airflow_port: int = 8080, mlflow_port: int = 5000) -> None:
    """Start ``airflow standalone`` + ``mlflow ui``; print URLs and admin credentials; stop both on Ctrl-C."""
    s = _settings.settings()
    env = airflow_env(RunContext.create(), AIRFLOW__CORE__PARALLELISM="4",
                      AIRFLOW__API__PORT=str(airflow_port),
                      AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True")
    ensure_airflow_db(env)
    mlflow_dir = s.mlflow_dir
    (mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    logs = s.airflow_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if the caller ignored SIGINT
    try:
        procs.append(spawn([venv_bin("airflow"), "standalone"], env, logs / "standalone.log"))
        procs.append(spawn([venv_bin("mlflow"), "ui",
                             "--backend-store-uri", s.mlflow_tracking_uri or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                             "--default-artifact-root", str(mlflow_dir / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                            env, logs / "mlflow-ui.log"))
        user, password = _wait_for_credentials(procs[0], s.airflow_home)
        print(f"Airflow UI : http://localhost:{airflow_port}  (user {user}, password {password})", flush=True)
        print(f"MLflow UI  : http://localhost:{mlflow_port}")
        print(f"logs       : {logs / 'standalone.log'}, {logs / 'mlflow-ui.log'}")
        print("Ctrl-C stops both.", flush=True)
        with sigterm_as_interrupt():
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        dead = next(p for p in procs if p.poll() is not None)
        raise UlmError(f"{Path(dead.args[0]).name} exited with {dead.returncode}; see {logs}")
    except KeyboardInterrupt:
        print("stopping Airflow and MLflow ...", flush=True)
    finally:
        for p in procs:
            stop(p)


def _wait_for_credentials(standalone: subprocess.Popen, airflow_home: Path,
                          timeout: float = 180.0) -> tuple[str, str]:
    """Admin user/password that ``airflow standalone`` writes under AIRFLOW_HOME (simple auth manager)."""
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and standalone.poll() is None:
        if path.exists() and path.read_text().strip():
            creds = json.loads(path.read_text())
            user, password = next(iter(creds.items()))
            return user, password
        time.sleep(1)
    return "admin", f"(see {path})"


