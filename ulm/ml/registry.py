"""Registration and champion/challenger promotion (docs/METRICS.md#machine-learning), with MLflow aliases
(never stages).

A new version gets alias ``challenger``. It becomes ``champion`` only when
  * it beats the current champion on the same holdout: ROC-AUC gain >= ``promotion_min_auc_gain`` (churn) or
    relative MAE reduction >= ``promotion_min_mae_gain`` (LTV); with no champion (or a champion that cannot
    score this holdout) it must beat the baseline by the same margin instead, and
  * it passes the fairness gate (equal opportunity, ``fairness_min_disparate_impact``) and the sanity gate.
The decision and reason are tags on the training run and on the model version.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ulm.core.settings import param
from ulm.ml import metrics as M
from ulm.ml.fairness import FairnessResult
from ulm.ml.tracking import MODEL_NAMES, configure

log = logging.getLogger("ulm.ml.registry")

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Decision:
    model_name: str
    version: str
    promoted: bool
    reason: str
    compared_against: str  # "champion v<N>" | "baseline"
    candidate_score: float
    reference_score: float


def primary_score(task: str, y_true, y_pred) -> float:
    """The promotion metric: ROC-AUC (churn, higher is better) or MAE (LTV, lower is better)."""
    return M.churn_metrics(y_true, y_pred)["roc_auc"] if task == "churn" else M.ltv_metrics(y_true, y_pred)["mae"]


def beats(task: str, candidate: float, reference: float) -> tuple[bool, str]:
    """Does ``candidate`` beat ``reference`` by the promotion margin?"""
    if task == "churn":
        gain, need = candidate - reference, float(param("promotion_min_auc_gain"))
        return gain >= need, f"ROC-AUC {candidate:.4f} vs {reference:.4f} (gain {gain:+.4f}, need >= {need})"
    gain = (reference - candidate) / reference if reference > 0 else (0.0 if candidate >= reference else 1.0)
    need = float(param("promotion_min_mae_gain"))
    return gain >= need, f"MAE {candidate:.2f} vs {reference:.2f} (relative gain {gain:+.2%}, need >= {need:.0%})"


def sanity_check(task: str, y_pred) -> tuple[bool, str]:
    """Predictions are finite and in range (probabilities in [0, 1]; LTV >= 0) and not constant."""
    p = np.asarray(y_pred, dtype="float64")
    if not np.isfinite(p).all():
        return False, "sanity: non-finite predictions"
    if task == "churn" and ((p < 0) | (p > 1)).any():
        return False, "sanity: churn probability outside [0, 1]"
    if task == "ltv" and (p < 0).any():
        return False, "sanity: negative predicted LTV"
    if np.ptp(p) == 0:
        return False, "sanity: constant predictions"
    return True, "sanity: ok"


def _champion_score(client: MlflowClient, name: str, task: str, holdout_x: pd.DataFrame, y_true,
                    horizon_days: int | None) -> tuple[str, float] | None:
    """(version, score) of the current champion on this holdout, or None when there is none / it cannot score."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
        inner = model.unwrap_python_model()
        if task == "ltv" and getattr(inner, "horizon_days", None) != horizon_days:
            log.warning("champion v%s has another LTV horizon; comparing with the baseline", mv.version)
            return None
        pred = model.predict(holdout_x)
    except (MlflowException, KeyError, ValueError) as exc:
        log.warning("champion v%s cannot score this holdout (%s); comparing with the baseline", mv.version, exc)
        return None
    return mv.version, primary_score(task, y_true, np.asarray(pred, dtype="float64").ravel())


def register_and_decide(*, task: str, run_id: str, model_uri: str, holdout_x: pd.DataFrame, y_true,
                        y_pred, baseline_pred, fairness: FairnessResult,
                        horizon_days: int | None = None) -> Decision:
    """Register ``model_uri`` as a new version (alias challenger) and promote it when it earns it."""
    configure()
    client = MlflowClient()
    name = MODEL_NAMES[task]
    champion = _champion_score(client, name, task, holdout_x, y_true, horizon_days)  # before the new version
    mv = mlflow.register_model(model_uri, name, tags={"task": task})
    client.set_registered_model_alias(name, CHALLENGER, mv.version)

    score = primary_score(task, y_true, y_pred)
    if champion is None:
        against, reference = "baseline", primary_score(task, y_true, baseline_pred)
    else:
        against, reference = f"champion v{champion[0]}", champion[1]
    won, why = beats(task, score, reference)
    sane, sanity_reason = sanity_check(task, y_pred)
    promoted = won and fairness.passed and sane
    reason = f"{'promoted' if promoted else 'not promoted'}: vs {against}: {why}; {fairness.reason}; {sanity_reason}"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    tags = {"promotion_decision": "promoted" if promoted else "rejected", "promotion_reason": reason,
            "promotion_compared_against": against}
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(name, mv.version, key, value)
    log.info("%s v%s %s", name, mv.version, reason)
    return Decision(name, str(mv.version), promoted, reason, against, float(score), float(reference))
