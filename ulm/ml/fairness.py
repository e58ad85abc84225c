"""Fairness audit and equal-opportunity promotion gate (docs/METRICS.md#machine-learning).

Per protected attribute (city tier, age band) and group the audit reports the actual and predicted
positive rates, ROC-AUC and true-positive rate (churn) or MAE and mean LTV (LTV). The gate compares the
model's *errors*: the min/max ratio across groups of the TPR (churn) or of ``mean LTV / MAE`` (LTV: 1/MAE
normalised by the group's mean LTV) must be >= ``fairness_min_disparate_impact``. The ratio of predicted
positive rates is reported and flagged below the same level but never blocks on its own.

Groups smaller than ``fairness_min_group_size`` persons (or, for the TPR, with fewer positives) are
reported but left out of the gate: their rates are noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ulm.core.settings import param, params
from ulm.ml.metrics import CLASSIFICATION_THRESHOLD

PROTECTED_ATTRIBUTES = ("city_tier", "age_band")
# Not a docs/METRICS.md number (overridden by vars.ulm.fairness_min_group_size when present). Below ~300 persons the
# sampling noise of a group's MAE or TPR alone moves the min/max ratio by more than 0.2 (measured on synthetic data).
DEFAULT_MIN_GROUP_SIZE = 300


def min_group_size() -> int:
    return int(params().get("fairness_min_group_size", DEFAULT_MIN_GROUP_SIZE))


@dataclass(frozen=True)
class FairnessResult:
    report: pd.DataFrame  # one row per (attribute, group)
    disparate_impact: float  # min over attributes of min/max error-based score (NaN: nothing to compare)
    positive_rate_ratio: float  # min over attributes of min/max predicted positive rate (churn only)
    passed: bool
    reason: str


def _group_frame(df: pd.DataFrame, attribute: str) -> pd.Series:
    col = df[attribute]
    if pd.api.types.is_numeric_dtype(col):
        col = col.round().astype("Int64")  # city tier 3.0 -> "3"
    return col.astype("string").fillna("unknown")


def _churn_group_stats(g: pd.DataFrame) -> dict[str, float]:
    y, p = g["y_true"].to_numpy(), g["y_pred"].to_numpy()
    pred_pos = p >= CLASSIFICATION_THRESHOLD
    positives = int(y.sum())
    return {
        "n": len(g),
        "positives": positives,
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(pred_pos.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < positives < len(g) else np.nan,
        "tpr": float(pred_pos[y == 1].mean()) if positives else np.nan,
    }


def _ltv_group_stats(g: pd.DataFrame) -> dict[str, float]:
    y, p = g["y_true"].to_numpy(), g["y_pred"].to_numpy()
    mae = float(np.abs(p - y).mean())
    mean_ltv = float(y.mean())
    return {
        "n": len(g),
        "mean_ltv": mean_ltv,
        "mean_predicted_ltv": float(p.mean()),
        "mae": mae,
        "relative_accuracy": mean_ltv / mae if mae > 0 else np.nan,
    }


def audit(df: pd.DataFrame, task: str, attributes: tuple[str, ...] = PROTECTED_ATTRIBUTES) -> pd.DataFrame:
    """Per-group report; ``df`` has ``y_true``, ``y_pred`` and the attribute columns. task: churn | ltv."""
    stats = _churn_group_stats if task == "churn" else _ltv_group_stats
    rows = []
    for attribute in attributes:
        groups = _group_frame(df, attribute)
        for value, g in df.groupby(groups, sort=True):
            rows.append({"task": task, "attribute": attribute, "group_value": str(value), **stats(g)})
    report = pd.DataFrame(rows)
    min_n = min_group_size()
    score_col = "tpr" if task == "churn" else "relative_accuracy"
    eligible = report["n"] >= min_n
    if task == "churn":
        eligible &= report["positives"] >= min_n // 5
    report["gated"] = eligible & report[score_col].notna()
    report["error_score"] = report[score_col]
    return report


def _min_max_ratio(report: pd.DataFrame, column: str, mask: pd.Series) -> float:
    ratios = []
    for _, g in report[mask].groupby("attribute"):
        v = g[column].dropna()
        if len(v) >= 2 and v.max() > 0:
            ratios.append(float(v.min() / v.max()))
    return min(ratios) if ratios else float("nan")


def evaluate(df: pd.DataFrame, task: str, attributes: tuple[str, ...] = PROTECTED_ATTRIBUTES) -> FairnessResult:
    """Audit + gate decision."""
    threshold = float(param("fairness_min_disparate_impact"))
    report = audit(df, task, attributes)
    di = _min_max_ratio(report, "error_score", report["gated"])
    pr = (_min_max_ratio(report, "predicted_positive_rate", report["n"] >= min_group_size())
          if task == "churn" else float("nan"))
    if task == "churn":
        top = report.groupby("attribute")["predicted_positive_rate"].transform("max")
        report["positive_rate_ratio"] = report["predicted_positive_rate"] / top.where(top > 0)
        report["positive_rate_flag"] = report["positive_rate_ratio"] < threshold
    if np.isnan(di):
        passed, reason = True, "fairness: fewer than two comparable groups per attribute, gate not applicable"
    elif di >= threshold:
        passed, reason = True, f"fairness: equal-opportunity ratio {di:.3f} >= {threshold}"
    else:
        worst = "TPR" if task == "churn" else "mean LTV / MAE"
        passed, reason = False, f"fairness: {worst} min/max ratio {di:.3f} < {threshold}"
    if task == "churn" and not np.isnan(pr) and pr < threshold:
        reason += f"; flag: predicted positive-rate ratio {pr:.3f} < {threshold} (reported, not blocking)"
    return FairnessResult(report, di, pr, passed, reason)
