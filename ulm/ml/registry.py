"""Registration and champion/challenger promotion (docs/ML.md#promotion), with MLflow aliases (never stages).

A new version gets alias ``challenger``. It becomes ``champion`` only when
  * it beats the current champion on a holdout **neither of them was trained on**: ROC-AUC gain
    >= ``promotion_min_auc_gain`` (churn) or relative MAE reduction >= ``promotion_min_mae_gain`` (LTV); with no
    champion (or a champion that cannot score this holdout: other features or label horizon) it must beat the
    baseline by the same margin instead, and
  * it passes the fairness gate (``ulm.ml.fairness``) and the sanity gate.

Holdout rule (:func:`holdout_unseen`): the candidate's holdout is the snapshot at cutoff ``H`` with labels in
``(H, H + h]``; a model was trained on it when one of its training cutoffs ``t`` has ``t + h > H`` (its training
labels reach past ``H``; ``t = H`` itself included). Training days out of order (a backfill) can produce a champion
trained on later data than the candidate's holdout: no holdout is then unseen by both, so the candidate is not
promoted and the champion stays (the reason says so).

The decision and reason are tags on the training run and on the model version, and one log line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

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
    reference_score: float  # NaN when no holdout was unseen by the champion
    holdout_cutoff: str = ""

    @property
    def outcome(self) -> str:
        return "promoted" if self.promoted else "rejected"


@dataclass(frozen=True)
class ChampionCheck:
    version: str
    score: float | None  # None: the champion was trained on the candidate's holdout
    why: str = ""


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


def labels_seen_until(train_cutoffs: list, horizon_days: int) -> date | None:
    """Last day whose outcome a model trained on ``train_cutoffs`` saw: latest cutoff + label horizon."""
    if not train_cutoffs:
        return None
    return max(date.fromisoformat(str(t)[:10]) for t in train_cutoffs) + timedelta(days=int(horizon_days))


def holdout_unseen(train_cutoffs: list, horizon_days: int, holdout_cutoff: date) -> bool:
    """The rule both models must meet: every training cutoff t has t + horizon <= holdout cutoff."""
    seen = labels_seen_until(train_cutoffs, horizon_days)
    return seen is None or seen <= holdout_cutoff


def _champion_check(client: MlflowClient, name: str, task: str, holdout_x: pd.DataFrame, y_true,
                    horizon_days: int, holdout_cutoff: date | None) -> ChampionCheck | None:
    """The current champion on this holdout; None when there is none or it cannot score it (then: baseline)."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
        inner = model.unwrap_python_model()
        champ_h = getattr(inner, "horizon_days", None) or horizon_days  # older churn versions kept no horizon
        if int(champ_h) != int(horizon_days):
            log.warning("champion v%s has a %s-day label, this holdout %s days; comparing with the baseline",
                        mv.version, champ_h, horizon_days)
            return None
        cutoffs = list(getattr(inner, "train_cutoffs", []) or [])
        if holdout_cutoff is not None and not holdout_unseen(cutoffs, horizon_days, holdout_cutoff):
            seen = labels_seen_until(cutoffs, horizon_days)
            return ChampionCheck(str(mv.version), None,
                                 f"champion v{mv.version} was trained on cutoffs up to {max(cutoffs)} (labels to "
                                 f"{seen}), past this holdout {holdout_cutoff}: no holdout is unseen by both "
                                 "(training days out of order?); champion kept")
        pred = model.predict(holdout_x)
    except (MlflowException, KeyError, ValueError) as exc:
        log.warning("champion v%s cannot score this holdout (%s); comparing with the baseline", mv.version, exc)
        return None
    return ChampionCheck(str(mv.version), primary_score(task, y_true, np.asarray(pred, dtype="float64").ravel()))


def _register(client: MlflowClient, name: str, run_id: str, model_uri: str, task: str):
    """New model version of ``model_uri`` (quietly: the client API, not ``mlflow.register_model``'s prints)."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return client.create_model_version(name, source=model_uri, run_id=run_id, tags={"task": task}, model_id=model_id)


def register_and_decide(*, task: str, run_id: str, model_uri: str, holdout_x: pd.DataFrame, y_true,
                        y_pred, baseline_pred, fairness: FairnessResult, horizon_days: int | None = None,
                        holdout_cutoff: date | None = None) -> Decision:
    """Register ``model_uri`` as a new version (alias challenger) and promote it when it earns it.

    ``horizon_days`` is the label horizon of ``y_true`` (churn window or LTV horizon); ``holdout_cutoff`` the
    snapshot day of the holdout (both feed the holdout rule; without a cutoff the rule is not applied)."""
    configure()
    client = MlflowClient()
    name = MODEL_NAMES[task]
    horizon = int(horizon_days or param("churn_horizon_days"))
    champion = _champion_check(client, name, task, holdout_x, y_true, horizon, holdout_cutoff)  # before registering
    mv = _register(client, name, run_id, model_uri, task)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    score = primary_score(task, y_true, y_pred)
    sane, sanity_reason = sanity_check(task, y_pred)
    if champion is None:
        against, reference = "baseline", primary_score(task, y_true, baseline_pred)
    else:
        against, reference = f"champion v{champion.version}", champion.score
    if reference is None:
        won, why, reference = False, champion.why, float("nan")
    else:
        won, why = beats(task, score, reference)
    promoted = won and fairness.passed and sane
    reason = f"{'promoted' if promoted else 'not promoted'}: vs {against}: {why}; {fairness.reason}; {sanity_reason}"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    cutoff = str(holdout_cutoff or "")
    decision = Decision(name, str(mv.version), promoted, reason, against, float(score), float(reference), cutoff)
    _record(client, run_id, decision)
    failed = [r for ok, r in ((fairness.passed, fairness.reason), (sane, sanity_reason)) if not ok]
    where = f" on the {cutoff} holdout" if cutoff and not np.isnan(reference) else ""
    log.info("%s v%s %s vs %s: %s", name, mv.version, decision.outcome, against, "; ".join([why + where, *failed]))
    return decision


def _record(client: MlflowClient, run_id: str, d: Decision) -> None:
    """Decision tags on the run and on the model version (+ the version's description)."""
    tags = {"promotion_decision": d.outcome, "promotion_reason": d.reason,
            "promotion_compared_against": d.compared_against, "promotion_holdout_cutoff": d.holdout_cutoff}
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(d.model_name, d.version, key, value)
    client.update_model_version(d.model_name, d.version, description=d.reason)
