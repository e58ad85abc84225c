"""Hand-checkable numbers for ulm.ml.metrics, ulm.ml.drift (PSI) and ulm.ml.fairness."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ulm.core.settings import param
from ulm.ml import drift, fairness
from ulm.ml import metrics as M


def test_churn_metrics_by_hand():
    m = M.churn_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered correctly
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["accuracy"] == pytest.approx(0.75)  # 0.35 < 0.5 is the one miss
    assert m["pr_auc"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # AP: precision at each positive's rank


def test_top_decile_lift_and_calibration():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    s = np.linspace(1, 0, 10)  # first row has the highest score
    assert M.top_decile_lift(y, s) == pytest.approx(1.0 / 0.2)
    assert M.top_decile_lift(y, -s) == pytest.approx(1.0 / 0.2)  # last row is also positive
    assert M.top_decile_lift(np.r_[0, 1, np.zeros(8)], s) == 0.0  # positive just below the top decile
    t = M.calibration_table([0, 1, 1, 0], [0.05, 0.95, 0.91, 0.15], bins=10)
    assert len(t) == 10 and t["n"].sum() == 4
    assert t.loc[9, "n"] == 2 and t.loc[9, "observed_rate"] == 1.0
    assert t.loc[9, "mean_predicted"] == pytest.approx(0.93)
    assert t.loc[1, "observed_rate"] == 0.0 and math.isnan(t.loc[5, "observed_rate"])


def test_ltv_metrics_by_hand():
    m = M.ltv_metrics([100, 100], [90, 120])
    assert m["mae"] == pytest.approx(15)
    assert m["rmse"] == pytest.approx(math.sqrt(250))
    assert m["total_revenue_error_pct"] == pytest.approx(5.0)
    y = np.array([1.0, 2, 3, 4])
    assert M.normalized_gini(y, y) == pytest.approx(1.0)
    assert M.normalized_gini(y, -y) == pytest.approx(-1.0)
    assert M.gini(y, y) == pytest.approx((4 / 10 + 7 / 10 + 9 / 10 + 1) / 4 - 5 / 8)
    assert M.ltv_metrics(y, y * 2)["spearman"] == pytest.approx(1.0)
    revenue = np.r_[10.0, np.zeros(9)]
    assert M.top_decile_revenue_capture(revenue, np.arange(10, 0, -1)) == 1.0
    assert M.top_decile_revenue_capture(revenue, np.arange(10)) == 0.0


def test_psi_by_hand():
    e = np.array(["a"] * 50 + ["b"] * 50)
    a = np.array(["a"] * 80 + ["b"] * 20)
    assert drift.psi(e, a) == pytest.approx(0.3 * math.log(1.6) + 0.3 * math.log(1 / 0.4))
    assert drift.psi(e, e) == 0.0
    x = np.arange(1000, dtype=float)
    assert drift.psi(x, x) == pytest.approx(0.0)
    # everything moves into the top decile: one bin 0.1 -> 1.0, nine bins 0.1 -> 0 (floored at EPSILON)
    eps = drift.EPSILON
    expected = 0.9 * math.log(10) + 9 * (eps - 0.1) * math.log(eps / 0.1)
    assert drift.psi(x, np.full(500, 5000.0)) == pytest.approx(expected)
    rep = drift.drift_report(pd.DataFrame({"f": x}), pd.DataFrame({"f": np.full(500, 5000.0)}), ["f"])
    assert bool(rep.loc[0, "alert"]) and rep.loc[0, "threshold"] == param("drift_psi_alert")


def _churn_group(tier: int, n_pos: int, tp: int, n_neg: int) -> pd.DataFrame:
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    p = np.r_[np.full(tp, 0.9), np.full(n_pos - tp, 0.1), np.full(n_neg, 0.2)]
    return pd.DataFrame({"y_true": y, "y_pred": p, "city_tier": tier, "age_band": "25-30"})


def test_fairness_gate_uses_tpr_ratio():
    ok = pd.concat([_churn_group(1, 200, 180, 200), _churn_group(2, 200, 160, 200)])
    res = fairness.evaluate(ok, "churn")
    assert res.disparate_impact == pytest.approx(80 / 90) and res.passed
    bad = pd.concat([_churn_group(1, 200, 180, 200), _churn_group(2, 200, 120, 200)])
    res = fairness.evaluate(bad, "churn")
    assert res.disparate_impact == pytest.approx(60 / 90) and not res.passed
    tiers = res.report[res.report["attribute"] == "city_tier"].set_index("group_value")
    assert tiers.loc["2", "tpr"] == pytest.approx(0.6)
    assert tiers.loc["2", "predicted_positive_rate"] == pytest.approx(120 / 400)
    assert bool(tiers.loc["2", "positive_rate_flag"])  # 0.30 / 0.45 < 0.8 is reported ...
    small = pd.concat([_churn_group(1, 200, 180, 200), _churn_group(3, 50, 10, 50)])
    assert fairness.evaluate(small, "churn").passed  # ... and groups below the minimum size do not gate


def test_fairness_ltv_relative_accuracy():
    g1 = pd.DataFrame({"y_true": np.full(400, 100.0), "y_pred": np.full(400, 110.0), "city_tier": 1})
    g2 = pd.DataFrame({"y_true": np.full(400, 1000.0), "y_pred": np.full(400, 1100.0), "city_tier": 2})
    res = fairness.evaluate(pd.concat([g1, g2]).assign(age_band=">50"), "ltv")
    assert res.disparate_impact == pytest.approx(1.0) and res.passed  # same MAE relative to the group mean
    g2["y_pred"] = 1300.0  # relative error 30% vs 10%
    res = fairness.evaluate(pd.concat([g1, g2]).assign(age_band=">50"), "ltv")
    assert res.disparate_impact == pytest.approx((1000 / 300) / (100 / 10)) and not res.passed
