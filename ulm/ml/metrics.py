"""Evaluation metrics (docs/METRICS.md#machine-learning) for the churn classifier and the LTV regressor.

Churn: ROC-AUC, PR-AUC (average precision), Brier score, accuracy at 0.5, lift in the top decile,
calibration table. LTV: MAE, RMSE, normalized Gini, Spearman rank correlation, top-decile revenue
capture, total-revenue error %. All functions take plain arrays and are vectorized.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

CLASSIFICATION_THRESHOLD = 0.5


def _arr(values) -> np.ndarray:
    return np.asarray(values, dtype="float64").ravel()


def _top_fraction_mask(score: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the ceil(fraction * n) highest scores; ties broken by position (stable sort)."""
    k = max(1, int(np.ceil(fraction * len(score))))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:k]] = True
    return mask


def top_decile_lift(y_true, y_score, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` by score divided by the overall positive rate."""
    y, s = _arr(y_true), _arr(y_score)
    base = y.mean()
    if base == 0:
        return float("nan")
    return float(y[_top_fraction_mask(s, fraction)].mean() / base)


def calibration_table(y_true, y_prob, bins: int = 10) -> pd.DataFrame:
    """Equal-width probability bins: count, mean predicted probability, observed positive rate."""
    y, p = _arr(y_true), _arr(y_prob)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    df = pd.DataFrame({"bin": idx, "y": y, "p": p})
    out = df.groupby("bin").agg(n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"))
    out = out.reindex(range(bins))
    out.insert(0, "bin_lower", np.arange(bins) / bins)
    out.insert(1, "bin_upper", (np.arange(bins) + 1) / bins)
    out["n"] = out["n"].fillna(0).astype(int)
    return out.reset_index(drop=True)


def expected_calibration_error(y_true, y_prob, bins: int = 10) -> float:
    """Count-weighted mean |observed - predicted| over the calibration bins."""
    t = calibration_table(y_true, y_prob, bins).dropna()
    return float((t["n"] * (t["observed_rate"] - t["mean_predicted"]).abs()).sum() / t["n"].sum())


def churn_metrics(y_true, y_prob) -> dict[str, float]:
    """Headline churn metrics; AUCs are NaN when only one class is present."""
    y, p = _arr(y_true), _arr(y_prob)
    two_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "accuracy": float(((p >= CLASSIFICATION_THRESHOLD) == (y == 1)).mean()),
        "top_decile_lift": top_decile_lift(y, p),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()),
        "n": float(len(y)),
    }


def gini(y_true, y_pred) -> float:
    """Gini of the actual values ordered by prediction (the Kaggle / insurance definition)."""
    y, s = _arr(y_true), _arr(y_pred)
    total = y.sum()
    if total == 0:
        return float("nan")
    order = np.lexsort((np.arange(len(s)), -s))  # descending by prediction, stable
    cum_share = np.cumsum(y[order]) / total
    n = len(y)
    return float(cum_share.sum() / n - (n + 1) / (2 * n))


def normalized_gini(y_true, y_pred) -> float:
    """Gini of the prediction divided by the Gini of a perfect ordering (1 = perfect ranking)."""
    best = gini(y_true, y_true)
    return float(gini(y_true, y_pred) / best) if best and not np.isnan(best) else float("nan")


def top_decile_revenue_capture(y_true, y_pred, fraction: float = 0.1) -> float:
    """Share of actual revenue held by the top ``fraction`` of persons by predicted value."""
    y, s = _arr(y_true), _arr(y_pred)
    total = y.sum()
    return float(y[_top_fraction_mask(s, fraction)].sum() / total) if total else float("nan")


def ltv_metrics(y_true, y_pred) -> dict[str, float]:
    """Headline LTV metrics (money in CNY)."""
    y, s = _arr(y_true), _arr(y_pred)
    err = s - y
    total = y.sum()
    rho = spearmanr(y, s).statistic if np.ptp(y) > 0 and np.ptp(s) > 0 else float("nan")
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "normalized_gini": normalized_gini(y, s),
        "spearman": float(rho),
        "top_decile_revenue_capture": top_decile_revenue_capture(y, s),
        "total_revenue_error_pct": float(100 * (s.sum() - total) / total) if total else float("nan"),
        "mean_actual": float(y.mean()),
        "n": float(len(y)),
    }
