"""Settings: the only module that reads ``ULM_*`` environment variables, and the parameters.

Two kinds of configuration, each with one source:

* **Deployment settings** (where things are, how many threads, which execution mode) come from the environment,
  read here and nowhere else: :func:`settings` returns them as one frozen :class:`Settings`. Every variable is
  listed in :data:`ENV_VARS` with its meaning (``ulm --help`` and docs/ARCHITECTURE.md show the same list).
* **Parameters** (every threshold, window and weight of the metric definitions in docs/METRICS.md) live in
  ``dbt_project/dbt_project.yml`` under ``vars.ulm``. Overrides come from ``ULM_PARAMS`` (a JSON object), which
  both sides read: Python through :func:`params` / :func:`param`, dbt through the ``p()`` macro. So an override
  changes SQL and Python alike.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ulm.core.errors import UlmError

PACKAGE_DIR = Path(__file__).resolve().parents[1]

# name -> what it sets (the complete list; nothing else in the package reads the environment for settings)
ENV_VARS: dict[str, str] = {
    "ULM_HOME": "project checkout holding dbt_project/ and dags/ (default: the checkout of this package)",
    "ULM_DATA_DIR": "generated data, warehouse, MLflow and Airflow state (default <home>/data)",
    "ULM_WAREHOUSE": "DuckDB warehouse file (default <data dir>/warehouse.duckdb; CLI --warehouse)",
    "ULM_LANDING_DIR": "landing folder the daily DAG ingests (default <data dir>/landing)",
    "ULM_PII_KEY": "secret key of the keyed PII hashes (HMAC-SHA256); never logged",
    "ULM_SUPPRESSION_KEY": "secret key of the erasure suppression list (default: ULM_PII_KEY); set it to the "
                           "old PII key before `ulm rotate-key` (docs/PRIVACY.md#key-rotation)",
    "ULM_PARAMS": "JSON object overriding parameters of vars.ulm, read by Python and dbt alike",
    "ULM_DBT_THREADS": "dbt threads (default 2)",
    "ULM_DUCKDB_MEMORY_LIMIT": "DuckDB memory_limit of every warehouse connection and of dbt: a size (12GB) or a "
                               "share of RAM (default 50%); beyond it DuckDB spills to disk (docs/PERFORMANCE.md)",
    "ULM_DBT_EXECUTION_MODE": "dbt in the daily DAG: build (default: one task, per-model Asset events), watcher (Cosmos: a sensor task per model) or local",
    "ULM_DBT_INVOCATION_MODE": "how Cosmos calls dbt: subprocess (default) or dbt_runner",
    "ULM_DAG_START_DATE": "start date of the DAGs (default 2025-01-01)",
    "ULM_DAG_CATCHUP": "true: the scheduler catches up missed days (default false)",
    "ULM_ML_THREADS": "LightGBM training threads (default 1)",
    "ULM_ML_PREDICT_THREADS": "LightGBM prediction threads for large frames (default: all cores)",
    "ULM_DAG_SCHEDULE": "daily (default): the DAGs' crons run them; manual: only triggers and publishes do",
    "ULM_TASK_RETRY_DELAY_SECONDS": "first retry delay of a failed DAG task (default 120, then exponential)",
    "ULM_CELERY_QUEUE": "Celery queue of every ULM task and the queue `ulm deploy`'s worker consumes (default "
                        "default): the worker on the machine holding the DuckDB file takes ULM's tasks, other "
                        "workers of a shared Airflow never do (docs/ORCHESTRATION.md#several-machines)",
    "ULM_DEPLOY_HOST": "address `ulm deploy` binds the Airflow and MLflow UIs to (default 127.0.0.1)",
    "ULM_DEPLOY_PG_PORT": "PostgreSQL port of `ulm deploy` (default 15432; always 127.0.0.1)",
    "ULM_DEPLOY_REDIS_PORT": "Redis port of `ulm deploy` (default 16379; always 127.0.0.1)",
    "ULM_DEPLOY_AIRFLOW_PORT": "Airflow api-server port of `ulm deploy` (default 8080)",
    "ULM_DEPLOY_MLFLOW_PORT": "MLflow server port of `ulm deploy` (default 5000)",
    "ULM_DEPLOY_WORKER_CONCURRENCY": "task slots of the Celery worker of `ulm deploy` (default 4)",
    "ULM_DEPLOY_PG_PASSWORD": "secret: PostgreSQL password of `ulm deploy` (default: generated into deploy/secrets.env)",
    "ULM_DEPLOY_REDIS_PASSWORD": "secret: Redis password of `ulm deploy` (default: generated)",
    "ULM_DEPLOY_ADMIN_PASSWORD": "secret: password of the Airflow user admin of `ulm deploy` (default: generated)",
    "ULM_PG_HOST": "PostgreSQL warehouse of the dbt target `postgres` (issue #15): host (default 127.0.0.1)",
    "ULM_PG_PORT": "PostgreSQL warehouse port (default 5432)",
    "ULM_PG_USER": "PostgreSQL warehouse user (default ulm)",
    "ULM_PG_DBNAME": "PostgreSQL warehouse database (default ulm)",
    "ULM_PG_PASSWORD": "secret: PostgreSQL warehouse password (no default)",
    "ULM_DEBUG": "1: print tracebacks instead of one-line errors",
    "ULM_BENCH_KEEP": "1: keep the benchmark work directory",
    # set by the in-process runner for its child (not for users)
    "ULM_SEQUENTIAL_TASKS": "1 under `ulm run`: tasks run one at a time in one process (dag.test)",
    "ULM_TASK_EVENTS": "file the DAG callbacks append task failures/skips to, read back by `ulm run`",
}
PII_KEY_ENV = "ULM_PII_KEY"
DBT_PII_KEY_ENV = "DBT_ENV_SECRET_ULM_PII_KEY"  # what dbt receives (dbt scrubs DBT_ENV_SECRET_* from its logs)
SUPPRESSION_KEY_ENV = "ULM_SUPPRESSION_KEY"
PARAMS_ENV = "ULM_PARAMS"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _flag(name: str) -> bool:
    return (_env(name, "") or "").lower() in ("1", "true", "yes")


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UlmError(f"environment variable {name}={raw!r}: not a whole number") from None


DEFAULT_DUCKDB_MEMORY_LIMIT = "50%"
_MEMORY_LIMIT = re.compile(r"^\d+(\.\d+)?\s*(%|[kmgt]i?b|b)$", re.IGNORECASE)


def _memory_limit(raw: str) -> str:
    if not _MEMORY_LIMIT.match(raw) or (raw.endswith("%") and not 0 < float(raw[:-1]) <= 100):
        raise UlmError(f"environment variable ULM_DUCKDB_MEMORY_LIMIT={raw!r}: use a size such as 12GB or a share "
                       f"of RAM such as 50%")
    return raw


@dataclass(frozen=True)
class Settings:
    """Deployment settings from the environment (see :data:`ENV_VARS`)."""

    home: Path
    data_dir: Path
    warehouse: Path
    landing_dir: Path
    dbt_threads: int
    dbt_execution_mode: str
    dbt_invocation_mode: str
    dag_start_date: date
    dag_catchup: bool
    dag_schedule: str
    task_retry_delay_seconds: int
    ml_threads: int
    ml_predict_threads: int
    debug: bool
    bench_keep: bool
    sequential_tasks: bool
    task_events: Path | None
    mlflow_tracking_uri: str | None
    celery_queue: str = "default"
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    @property
    def dbt_project_dir(self) -> Path:
        return self.home / "dbt_project"

    @property
    def dags_dir(self) -> Path:
        return self.home / "dags"

    @property
    def airflow_home(self) -> Path:
        return self.data_dir / "airflow"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"


def settings() -> Settings:
    """The current settings (read afresh: tests and launchers change the environment between calls)."""
    home = Path(_env("ULM_HOME") or PACKAGE_DIR.parent).resolve()
    data = Path(_env("ULM_DATA_DIR") or home / "data").resolve()
    warehouse = Path(_env("ULM_WAREHOUSE") or data / "warehouse.duckdb").resolve()
    landing = Path(_env("ULM_LANDING_DIR") or data / "landing").resolve()
    events = _env("ULM_TASK_EVENTS")
    mode = (_env("ULM_DBT_EXECUTION_MODE", "build") or "build").lower()
    invocation = (_env("ULM_DBT_INVOCATION_MODE", "subprocess") or "subprocess").lower()
    if mode not in ("watcher", "build", "local"):
        raise UlmError(f"environment variable ULM_DBT_EXECUTION_MODE={mode!r}: use watcher, build or local")
    if invocation not in ("subprocess", "dbt_runner"):
        raise UlmError(f"environment variable ULM_DBT_INVOCATION_MODE={invocation!r}: use subprocess or dbt_runner")
    try:
        start = date.fromisoformat(_env("ULM_DAG_START_DATE", "2025-01-01") or "2025-01-01")
    except ValueError:
        raise UlmError("environment variable ULM_DAG_START_DATE: not a date in YYYY-MM-DD form") from None
    schedule = (_env("ULM_DAG_SCHEDULE", "daily") or "daily").lower()
    if schedule not in ("daily", "manual"):
        raise UlmError(f"environment variable ULM_DAG_SCHEDULE={schedule!r}: use daily or manual")
    return Settings(
        home=home, data_dir=data, warehouse=warehouse, landing_dir=landing,
        dbt_threads=_int("ULM_DBT_THREADS", 2), dbt_execution_mode=mode, dbt_invocation_mode=invocation,
        dag_start_date=start, dag_catchup=_flag("ULM_DAG_CATCHUP"), dag_schedule=schedule,
        task_retry_delay_seconds=_int("ULM_TASK_RETRY_DELAY_SECONDS", 120),
        ml_threads=_int("ULM_ML_THREADS", 1), ml_predict_threads=_int("ULM_ML_PREDICT_THREADS", os.cpu_count() or 1),
        debug=_flag("ULM_DEBUG"), bench_keep=_flag("ULM_BENCH_KEEP"),
        sequential_tasks=_flag("ULM_SEQUENTIAL_TASKS"), task_events=Path(events) if events else None,
        mlflow_tracking_uri=_env("MLFLOW_TRACKING_URI"),
        celery_queue=_queue(_env("ULM_CELERY_QUEUE", "default") or "default"),
        duckdb_memory_limit=_memory_limit(_env("ULM_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT)
                                          or DEFAULT_DUCKDB_MEMORY_LIMIT),
    )


def _queue(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise UlmError(f"environment variable ULM_CELERY_QUEUE={name!r}: a queue name of letters, digits, '_', '.', "
                       "'-' (at most 64)")
    return name


@dataclass(frozen=True)
class DeploySettings:
    """Where `ulm deploy` listens and how big its worker is (``ULM_DEPLOY_*``)."""

    host: str
    pg_port: int
    redis_port: int
    airflow_port: int
    mlflow_port: int
    worker_concurrency: int


def deploy_settings() -> DeploySettings:
    return DeploySettings(host=_env("ULM_DEPLOY_HOST", "127.0.0.1") or "127.0.0.1",
                          pg_port=_int("ULM_DEPLOY_PG_PORT", 15432), redis_port=_int("ULM_DEPLOY_REDIS_PORT", 16379),
                          airflow_port=_int("ULM_DEPLOY_AIRFLOW_PORT", 8080),
                          mlflow_port=_int("ULM_DEPLOY_MLFLOW_PORT", 5000),
                          worker_concurrency=_int("ULM_DEPLOY_WORKER_CONCURRENCY", 4))


def secret(name: str) -> str | None:
    """A secret from the environment (deployment passwords, Fernet key, JWT secret); None when unset."""
    return _env(name)


# ------------------------------------------------------------------------------------------------ paths

def project_root() -> Path:
    return settings().home


def dbt_project_dir() -> Path:
    return settings().dbt_project_dir


def data_dir() -> Path:
    return settings().data_dir


def warehouse_path() -> Path:
    return settings().warehouse


def cdnow_dir() -> Path:
    """The public CDNOW transaction files shipped with the project (``datasets/cdnow``)."""
    return project_root() / "datasets" / "cdnow"


# ------------------------------------------------------------------------------------------------ secrets

def pii_key() -> str | None:
    """The PII hashing key from the environment (``ULM_PII_KEY``, or the copy dbt receives), or None."""
    return _env(PII_KEY_ENV) or _env(DBT_PII_KEY_ENV)


def postgres() -> dict[str, Any]:
    """The PostgreSQL warehouse of the ``postgres`` dbt target (``ULM_PG_*``); the password only from there."""
    return {"host": _env("ULM_PG_HOST", "127.0.0.1"), "port": _int("ULM_PG_PORT", 5432),
            "user": _env("ULM_PG_USER", "ulm"), "dbname": _env("ULM_PG_DBNAME", "ulm"),
            "password": _env("ULM_PG_PASSWORD") or _env("DBT_ENV_SECRET_ULM_PG_PASSWORD")}


def suppression_key() -> str | None:
    """The key of the erasure suppression list: ``ULM_SUPPRESSION_KEY``, else the PII key."""
    return _env(SUPPRESSION_KEY_ENV) or pii_key()


def export_pii_key(value: str) -> None:
    """Make ``value`` the key of this process and of the processes it starts (dbt, Airflow)."""
    os.environ[PII_KEY_ENV] = value


# ------------------------------------------------------------------------------------------------ parameters

@lru_cache(maxsize=4)
def _yaml_params(project_yml: Path) -> dict[str, Any]:
    with open(project_yml, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    return dict(doc.get("vars", {}).get("ulm", {}))


@lru_cache(maxsize=16)
def _overrides(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UlmError(f"environment variable {PARAMS_ENV}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UlmError(f"environment variable {PARAMS_ENV}: must be a JSON object of parameter overrides")
    return value


def param_overrides() -> dict[str, Any]:
    """Parameter overrides from ``ULM_PARAMS`` (validated against the known parameters)."""
    raw = _env(PARAMS_ENV)
    if not raw:
        return {}
    overrides = dict(_overrides(raw))
    known = _yaml_params(dbt_project_dir() / "dbt_project.yml")
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UlmError(f"environment variable {PARAMS_ENV}: unknown parameter {unknown[0]!r} "
                       f"(the parameters are vars.ulm in dbt_project/dbt_project.yml)")
    return overrides


def params() -> dict[str, Any]:
    """Every parameter: ``vars.ulm`` of dbt_project.yml with the ``ULM_PARAMS`` overrides applied."""
    merged = dict(_yaml_params(dbt_project_dir() / "dbt_project.yml"))
    merged.update(param_overrides())
    return merged


def param(name: str) -> Any:
    p = params()
    if name not in p:
        raise KeyError(f"unknown parameter {name!r}: add it to vars.ulm in dbt_project/dbt_project.yml")
    return p[name]
