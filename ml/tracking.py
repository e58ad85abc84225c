"""MLflow wiring: tracking URI, artifact root and the two experiments (``ulm-churn``, ``ulm-ltv``).

Default store: ``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under ``<data_dir>/mlflow/artifacts``
(``ulm.config.data_dir()``). ``MLFLOW_TRACKING_URI`` overrides the store; then the server decides where
artifacts go. The model registry uses the same URI.
"""
from __future__ import annotations

import os
from pathlib import Path

import mlflow

from ulm.config import data_dir

EXPERIMENTS = {"churn": "ulm-churn", "ltv": "ulm-ltv"}
MODEL_NAMES = {"churn": "ulm_churn", "ltv": "ulm_ltv"}


def mlflow_dir() -> Path:
    return data_dir() / "mlflow"


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def artifact_root() -> Path:
    return mlflow_dir() / "artifacts"


def configure() -> str:
    """Point MLflow (tracking + registry) at the ULM store; returns the URI."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(task: str) -> str:
    """Create the task's experiment on first use (artifact location under the ULM artifact root)."""
    configure()
    name = EXPERIMENTS[task]
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else (artifact_root() / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)
