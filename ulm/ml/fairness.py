"""Fairness audit and equal-opportunity promotion gate (docs/METRICS.md#machine-learning), computed with fairlearn's
``MetricFrame``.

Per protected attribute (city tier, age band) one ``MetricFrame`` disaggregates the holdout metrics by group: the
actual and predicted positive rates, ROC-AUC and true-positive rate (churn, threshold 0.5) or MAE, mean LTV and
mean predicted LTV (LTV). The gate compares the model's *errors*: the ``MetricFrame.ratio()`` (group min / group
max) of the TPR (churn) or of ``mean LTV / MAE`` (LTV: 1/MAE normalised by the group's mean LTV) must be
>= ``fairness_min_disparate_impact``, for each attribute. The ratio of predicted positive rates is reported and
flagged below the same level but never blocks on its own.

Groups smaller than ``fairness_min_group_size`` persons (or, for the TPR, with fewer than a fifth of that many
positives) are reported but left out of the gate: their rates are noise. The gate's ``MetricFrame`` is built on
the rows of the eligible groups only, and needs two of them per attribute.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count, mean_prediction, selection_rate, true_positive_rate
from sklearn.metrics import mean_absolute_error, roc_auc_score

from ulm.core.settings import param, params
from ulm.ml.metrics import CLASSIFICATION_THRESHOLD

PROTECTED_ATTRIBUTES = ("city_tier", "age_band")
# Not a docs/METRICS.md number (overridden by vars.ulm.fairness_min_group_size when present). Below ~300 persons the
# sampling noise of a group's MAE or TPR alone moves the min/max ratio by more than 0.2 (measured on synthetic data).
DEFAULT_MIN_GROUP_SIZE = 300
GATE_METRIC = {"churn": ("tpr", "TPR (equal opportunity)"), "ltv": ("relative_accuracy", "mean LTV / MAE")}


def min_group_size() -> int:
    return int(params().get("fairness_min_group_size", DEFAULT_MIN_GROUP_SIZE))


@dataclass(frozen=True)
class FairnessResult:
    report: pd.DataFrame  # one row per (attribute, group)
    disparate_impact: float  # min over attributes of the gate metric's MetricFrame ratio (NaN: nothing to compare)
    positive_rate_ratio: float  # min over attributes of the predicted positive rate ratio (churn only)
    passed: bool
    reason: str


# ----------------------------------------------------------------------------------------------- metrics


def _flagged(y_pred) -> np.ndarray:
    return np.asarray(y_pred, dtype="float64") >= CLASSIFICATION_THRESHOLD


def positives(y_true, y_pred) -> float:
    return float(np.sum(y_true))


def mean_true(y_true, y_pred) -> float:
    """Mean of the actual values: the positive rate (churn) or the mean LTV."""
    return float(np.mean(y_true))


def predicted_positive_rate(y_true, y_pred) -> float:
    return float(selection_rate(y_true, _flagged(y_pred)))


def tpr(y_true, y_pred) -> float:
    """True-positive rate at the classification threshold; NaN for a group without positives."""
    y = np.asarray(y_true)
    return float(true_positive_rate(y, _flagged(y_pred), pos_label=1)) if y.sum() else float("nan")


def roc_auc(y_true, y_pred) -> float:
    y = np.asarray(y_true)
    return float(roc_auc_score(y, y_pred)) if 0 < y.sum() < len(y) else float("nan")


def mae(y_true, y_pred) -> float:
    return float(mean_absolute_error(y_true, y_pred))


def relative_accuracy(y_true, y_pred) -> float:
    """Mean LTV / MAE: 1/MAE normalised by the group's level, so groups that spend more may err more."""
    err = mae(y_true, y_pred)
    return float(np.mean(y_true)) / err if err > 0 else float("nan")


METRICS = {
    "churn": {"n": count, "positives": positives, "positive_rate": mean_true,
              "predicted_positive_rate": predicted_positive_rate, "roc_auc": roc_auc, "tpr": tpr},
    "ltv": {"n": count, "mean_ltv": mean_true, "mean_predicted_ltv": mean_prediction, "mae": mae,
            "relative_accuracy": relative_accuracy},
}
_BY_NAME = {**METRICS["churn"], **METRICS["ltv"]}


# ----------------------------------------------------------------------------------------------- audit


def groups(df: pd.DataFrame, attribute: str) -> pd.Series:
    """Group labels of an attribute as strings (city tier 3.0 -> "3"; missing -> "unknown")."""
    col = df[attribute]
    if pd.api.types.is_numeric_dtype(col):
        col = col.round().astype("Int64")
    return col.astype("string").fillna("unknown").astype(object).rename(attribute)


def metric_frame(df: pd.DataFrame, attribute: str, metrics: dict) -> MetricFrame:
    return MetricFrame(metrics=metrics, y_true=df["y_true"].to_numpy(), y_pred=df["y_pred"].to_numpy(),
                       sensitive_features=groups(df, attribute))


def audit(df: pd.DataFrame, task: str, attributes: tuple[str, ...] = PROTECTED_ATTRIBUTES) -> pd.DataFrame:
    """Per-group report (``MetricFrame.by_group`` of each attribute); ``df`` has ``y_true``, ``y_pred`` and the
    attribute columns. task: churn | ltv."""
    parts = []
    for attribute in attributes:
        by_group = metric_frame(df, attribute, METRICS[task]).by_group
        parts.append(by_group.rename_axis("group_value").reset_index().assign(task=task, attribute=attribute))
    report = pd.concat(parts, ignore_index=True)
    report["n"] = report["n"].astype(int)
    if task == "churn":
        report["positives"] = report["positives"].astype(int)
    score_col = GATE_METRIC[task][0]
    report["gated"] = _eligible(report, task) & report[score_col].notna()
    report["error_score"] = report[score_col].astype(float)
    front = ["task", "attribute", "group_value"]
    return report[front + [c for c in report.columns if c not in front]]


def _eligible(report: pd.DataFrame, task: str) -> pd.Series:
    ok = report["n"] >= min_group_size()
    return ok & (report["positives"] >= min_group_size() // 5) if task == "churn" else ok


def gate_ratio(df: pd.DataFrame, report: pd.DataFrame, attribute: str, metric: str, mask: pd.Series) -> float:
    """``MetricFrame.ratio(method="between_groups")`` (group min / group max) of ``metric`` over the groups of
    ``attribute`` that ``mask`` (rows of ``report``) selects; NaN with fewer than two such groups or a zero maximum."""
    keep = report.loc[mask & (report["attribute"] == attribute), "group_value"]
    if len(keep) < 2:
        return float("nan")
    rows = groups(df, attribute).isin(set(keep)).to_numpy()
    mf = metric_frame(df[rows], attribute, {metric: _BY_NAME[metric]})
    if not mf.group_max()[metric] > 0:
        return float("nan")
    return float(mf.ratio(method="between_groups")[metric])


def _min_ratio(df: pd.DataFrame, report: pd.DataFrame, metric: str, mask: pd.Series) -> tuple[float, str | None]:
    ratios = {a: gate_ratio(df, report, a, metric, mask) for a in report["attribute"].unique()}
    ratios = {a: r for a, r in ratios.items() if not np.isnan(r)}
    if not ratios:
        return float("nan"), None
    worst = min(ratios, key=ratios.get)
    return ratios[worst], worst


def evaluate(df: pd.DataFrame, task: str, attributes: tuple[str, ...] = PROTECTED_ATTRIBUTES) -> FairnessResult:
    """Audit + gate decision."""
    threshold = float(param("fairness_min_disparate_impact"))
    report = audit(df, task, attributes)
    metric, label = GATE_METRIC[task]
    di, worst = _min_ratio(df, report, metric, report["gated"])
    pr = float("nan")
    if task == "churn":
        pr, _ = _min_ratio(df, report, "predicted_positive_rate", report["n"] >= min_group_size())
        top = report.groupby("attribute")["predicted_positive_rate"].transform("max")
        report["positive_rate_ratio"] = report["predicted_positive_rate"] / top.where(top > 0)
        report["positive_rate_flag"] = report["positive_rate_ratio"] < threshold
    if np.isnan(di):
        passed, reason = True, "fairness: fewer than two comparable groups per attribute, gate not applicable"
    else:
        passed = di >= threshold
        reason = f"fairness: {label} min/max ratio {di:.3f} {'>=' if passed else '<'} {threshold} ({worst})"
    if task == "churn" and not np.isnan(pr) and pr < threshold:
        reason += f"; flag: predicted positive-rate ratio {pr:.3f} < {threshold} (reported, not blocking)"
    return FairnessResult(report, di, pr, passed, reason)
