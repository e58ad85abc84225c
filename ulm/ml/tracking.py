"""MLflow wiring: tracking URI, artifact root and the two experiments (``ulm-churn``, ``ulm-ltv``).

Default store: ``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under ``<data_dir>/mlflow/artifacts``
(``ulm.core.settings.settings().mlflow_dir``). ``MLFLOW_TRACKING_URI`` (``settings().mlflow_tracking_uri``) overrides
the store; then the server decides where artifacts go. The model registry uses the same URI.
"""
from __future__ import annotations

from pathlib import Path

import mlflow

from ulm.core.settings import settings

EXPERIMENTS = {"churn": "ulm-churn", "ltv": "ulm-ltv"}
MODEL_NAMES = {"churn": "ulm_churn", "ltv": "ulm_ltv"}


def tracking_uri() -> str:
    return settings().mlflow_tracking_uri or f"sqlite:///{settings().mlflow_dir / 'mlflow.db'}"


def artifact_root() -> Path:
    return settings().mlflow_dir / "artifacts"


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
    location = None if settings().mlflow_tracking_uri else (artifact_root() / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)
