"""MLflow wiring: tracking URI, artifact location, the experiments (``ulm-churn``, ``ulm-ltv``, ``ulm-clv``) and
their default view, run names.

Default store: ``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under ``<data_dir>/mlflow/artifacts``
(``ulm.core.settings.settings().mlflow_dir``). ``MLFLOW_TRACKING_URI`` (``settings().mlflow_tracking_uri``) overrides
the store: another local SQLite file keeps its artifacts in ``artifacts/`` next to it; a tracking server
(``http(s)://``, ``databricks``) decides where artifacts go. The model registry uses the same URI.

Why the location is derived from the URI, never from "is MLFLOW_TRACKING_URI set": ``mlflow.set_tracking_uri``
exports ``MLFLOW_TRACKING_URI`` to the process environment (so child processes inherit it), so after the first
``configure()`` the variable is always set. Passing ``artifact_location=None`` for a SQLite store makes MLflow
fall back to ``./mlruns`` relative to the current directory, which is how artifacts used to land in
``<cwd>/mlruns``.

Each experiment carries tags for the MLflow UI: a description (``mlflow.note.content``), the primary metric, and a
saved runs-table view (``mlflow.sharedViewState.<key>``, the UI's saved-view envelope: ``{name, createdAt,
updatedAt, state}``) with the default metric, param and tag columns, opened by :func:`default_view_url` or picked
by name in the UI's view list. The same column list is in the ``ulm.default_columns`` tag for scripts.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from ulm.core.settings import settings

log = logging.getLogger("ulm.ml.tracking")

EXPERIMENTS = {"churn": "ulm-churn", "ltv": "ulm-ltv", "clv": "ulm-clv"}
MODEL_NAMES = {"churn": "ulm_churn", "ltv": "ulm_ltv"}
DEFAULT_VIEW_KEY = "ulm-default"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI: experiment tag read by ?viewStateShareKey=<key>

_COMMON_PARAMS = ("as_of", "holdout_cutoff", "horizon_days", "n_train")
_COMMON_TAGS = ("promotion_decision", "promotion_compared_against", "data_digest")
DEFAULT_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "churn": {"metrics": ("roc_auc", "baseline_roc_auc", "pr_auc", "brier", "top_decile_lift", "ece",
                          "fairness_disparate_impact", "champion_roc_auc"),
              "params": _COMMON_PARAMS, "tags": _COMMON_TAGS},
    "ltv": {"metrics": ("mae", "baseline_mae", "bgnbd_mae", "normalized_gini", "spearman",
                        "top_decile_revenue_capture", "total_revenue_error_pct", "fairness_disparate_impact",
                        "champion_mae"),
            "params": _COMMON_PARAMS, "tags": _COMMON_TAGS},
    "clv": {"metrics": ("holdout_predicted_repeat_purchases", "holdout_actual_repeat_purchases",
                        "holdout_total_error_pct", "cumulative_total_error_pct", "holdout_mae_per_person",
                        "holdout_rmse_per_person"),
            "params": ("model", "calibration_end", "holdout_end", "n_persons"), "tags": ("clv_role",)},
}
PRIMARY_METRIC = {"churn": ("roc_auc", True), "ltv": ("mae", False), "clv": ("holdout_mae_per_person", False)}
DESCRIPTIONS = {
    "churn": "Churn classifier (`ulm train`): LightGBM vs a logistic-regression baseline on point-in-time "
             "snapshots; the registered model is `ulm_churn`.",
    "ltv": "LTV regressor (`ulm train`): LightGBM Tweedie vs the historical-average baseline and BG/NBD + "
           "Gamma-Gamma; the registered model is `ulm_ltv`.",
    "clv": "Probabilistic CLV checked on predictions (`python -m ulm.bench.ml clv-holdout`): BG/NBD (champion) and "
           "Pareto/NBD (challenger) calibrated on one period, compared on the next.",
}


def default_uri() -> str:
    return f"sqlite:///{settings().mlflow_dir / 'mlflow.db'}"


def tracking_uri() -> str:
    return settings().mlflow_tracking_uri or default_uri()


def artifact_root(uri: str | None = None) -> Path | None:
    """Where a new experiment's artifacts go: ``<data_dir>/mlflow/artifacts`` for the default store, ``artifacts/``
    next to another SQLite file, None for a tracking server (the server's ``--default-artifact-root`` decides)."""
    uri = uri or tracking_uri()
    if uri == default_uri():
        return settings().mlflow_dir / "artifacts"
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
    return None


def configure() -> str:
    """Point MLflow (tracking + registry) at the ULM store; returns the URI."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(task: str) -> str:
    """The task's experiment, created on first use with its artifact location; its UI tags are kept current."""
    uri = configure()
    name = EXPERIMENTS[task]
    root = artifact_root(uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        exp_id = mlflow.create_experiment(name, artifact_location=(root / name).as_uri() if root else None)
    else:
        exp_id = exp.experiment_id
        _check_location(name, exp.artifact_location, root)
    _set_experiment_tags(exp_id, task)
    return exp_id


def _check_location(name: str, location: str, root: Path | None) -> None:
    """Warn once about an experiment created elsewhere (e.g. by an older version under ``./mlruns``): MLflow cannot
    move an experiment's artifact location, so its new runs keep writing there."""
    if root is None or location.startswith(root.as_uri()) or name in _warned:
        return
    _warned.add(name)
    log.warning("MLflow experiment %s keeps its artifacts in %s, not under %s (it was created before); delete the "
                "experiment (or the store) to move new runs there", name, location, root)


_warned: set[str] = set()


def default_columns(task: str) -> list[str]:
    """Runs-table columns of the default view, as MLflow UI canonical keys (``metrics.`roc_auc```)."""
    cols = DEFAULT_COLUMNS[task]
    return [f"{kind}.`{key}`" for kind in ("metrics", "params", "tags") for key in cols[kind]]


def _view_envelope(task: str, current: str | None) -> str | None:
    """The default view as the MLflow UI's saved-view envelope (listed by name among the experiment's views);
    None when ``current`` already holds the same state."""
    state = json.dumps({"selectedColumns": default_columns(task), "orderByKey": "attributes.start_time",
                        "orderByAsc": False})
    try:
        if current and json.loads(current).get("state") == state:
            return None
    except (ValueError, AttributeError):
        pass
    now = int(time.time() * 1000)
    return json.dumps({"name": "ULM default columns", "createdAt": now, "updatedAt": now, "state": state})


def _set_experiment_tags(exp_id: str, task: str) -> None:
    metric, greater = PRIMARY_METRIC[task]
    client = MlflowClient()
    current = client.get_experiment(exp_id).tags
    tags = {
        "mlflow.note.content": f"{DESCRIPTIONS[task]} Runs are named `<model>-<as_of>-<run id prefix>`; the "
                               f"default columns: pick the view 'ULM default columns' or open `runs?viewStateShareKey="
                               f"{DEFAULT_VIEW_KEY}` (docs/ML.md#what-each-run-carries).",
        "ulm.default_columns": ",".join(default_columns(task)),
        "mlflow.experiment.primaryMetric.name": metric,
        "mlflow.experiment.primaryMetric.greaterIsBetter": str(greater).lower(),
        "mlflow.experimentKind": "custom_model_development",  # the UI opens on the runs table, not GenAI traces
    }
    view = _view_envelope(task, current.get(SHARED_VIEW_TAG + DEFAULT_VIEW_KEY))
    if view is not None:
        tags[SHARED_VIEW_TAG + DEFAULT_VIEW_KEY] = view
    for key, value in tags.items():
        if current.get(key) != value:
            client.set_experiment_tag(exp_id, key, value)


def default_view_url(ui_url: str, task: str) -> str:
    """Link to the experiment's runs table with the default columns (``ui_url`` e.g. http://127.0.0.1:5000)."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id(task)}/runs?viewStateShareKey={DEFAULT_VIEW_KEY}"


def run_name(model: str, as_of, run_id: str) -> str:
    """``<model>-<as_of>-<first 8 characters of the run id>``, e.g. ``ulm_churn-2025-12-31-3f2a9c1e``."""
    return f"{model}-{as_of}-{run_id[:8]}"
