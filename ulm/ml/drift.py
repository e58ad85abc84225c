"""Population Stability Index (docs/METRICS.md#machine-learning) between the training (expected) and scoring (actual)
populations.

``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over bins, with shares floored at ``EPSILON`` so empty bins stay
finite. Numeric columns use decile edges of the expected sample (ties collapse bins); categorical columns
use their values (missing -> its own category). PSI above ``drift_psi_alert`` raises an alert.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ulm.core.settings import param

EPSILON = 1e-4
DEFAULT_BINS = 10


def _psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected, EPSILON)
    a = np.maximum(actual, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_numeric(expected, actual, bins: int = DEFAULT_BINS) -> float:
    """PSI with quantile bins of ``expected``; NaNs form an extra bin."""
    e = np.asarray(expected, dtype="float64").ravel()
    a = np.asarray(actual, dtype="float64").ravel()
    e_ok, a_ok = e[~np.isnan(e)], a[~np.isnan(a)]
    if len(e_ok) == 0 or len(a_ok) == 0:
        return psi_categorical(np.isnan(e), np.isnan(a))
    inner = np.unique(np.quantile(e_ok, np.linspace(0, 1, bins + 1)[1:-1]))
    e_counts = np.bincount(np.searchsorted(inner, e_ok, side="right"), minlength=len(inner) + 1)
    a_counts = np.bincount(np.searchsorted(inner, a_ok, side="right"), minlength=len(inner) + 1)
    e_shares = np.append(e_counts, len(e) - len(e_ok)) / len(e)
    a_shares = np.append(a_counts, len(a) - len(a_ok)) / len(a)
    return _psi_from_shares(e_shares, a_shares)


def psi_categorical(expected, actual) -> float:
    """PSI over category shares (union of categories; missing values are a category)."""
    e = pd.Series(expected).astype("string").fillna("<null>").value_counts(normalize=True)
    a = pd.Series(actual).astype("string").fillna("<null>").value_counts(normalize=True)
    cats = e.index.union(a.index)
    return _psi_from_shares(e.reindex(cats, fill_value=0).to_numpy(), a.reindex(cats, fill_value=0).to_numpy())


def psi(expected, actual, bins: int = DEFAULT_BINS) -> float:
    """Dispatch on dtype: numeric (incl. bool) -> binned, otherwise categorical."""
    s = pd.Series(expected)
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return psi_numeric(s.astype("float64"), pd.Series(actual).astype("float64"), bins)
    return psi_categorical(expected, actual)


def drift_report(train: pd.DataFrame, scoring: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per column: psi, alert flag (PSI > drift_psi_alert), sample sizes."""
    threshold = float(param("drift_psi_alert"))
    rows = []
    for col in columns:
        value = psi(train[col], scoring[col])
        rows.append({"feature": col, "psi": value, "alert": value > threshold, "threshold": threshold,
                     "n_expected": len(train), "n_actual": len(scoring)})
    return pd.DataFrame(rows)
