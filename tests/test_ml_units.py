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


# ----------------------------------------------------------------------------------------------- fairlearn audit


def _random_holdout(task: str, n: int = 3000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"city_tier": rng.integers(1, 6, n).astype(float),
                       "age_band": rng.choice(["18-24", "25-30", "31-40", None], n)})
    df.loc[:20, "city_tier"] = np.nan  # missing attribute -> its own "unknown" group
    if task == "churn":
        y = (rng.random(n) < 0.4).astype(int)
        return df.assign(y_true=y, y_pred=np.clip(0.45 * y + rng.random(n) * 0.6, 0, 1))
    return df.assign(y_true=rng.gamma(1.0, 100.0, n) * (rng.random(n) < 0.5), y_pred=rng.gamma(1.0, 80.0, n))


def test_fairness_audit_equals_a_plain_groupby():
    """The MetricFrame report holds the same numbers as an independent pandas computation per group."""
    df = _random_holdout("churn")
    report = fairness.evaluate(df, "churn").report.set_index(["attribute", "group_value"])
    tiers = df["city_tier"].map(lambda v: "unknown" if pd.isna(v) else str(int(v)))
    for value, g in df.groupby(tiers):
        row = report.loc[("city_tier", value)]
        flagged = g["y_pred"] >= 0.5
        assert row["n"] == len(g) and row["positives"] == g["y_true"].sum()
        assert row["predicted_positive_rate"] == pytest.approx(flagged.mean())
        assert row["tpr"] == pytest.approx(flagged[g["y_true"] == 1].mean())
    assert set(report.loc["age_band"].index) == {"18-24", "25-30", "31-40", "unknown"}
    ltv = _random_holdout("ltv")
    rep = fairness.evaluate(ltv, "ltv").report.set_index(["attribute", "group_value"])
    g = ltv[ltv["age_band"] == "25-30"]
    mae = (g["y_pred"] - g["y_true"]).abs().mean()
    assert rep.loc[("age_band", "25-30"), "mae"] == pytest.approx(mae)
    assert rep.loc[("age_band", "25-30"), "relative_accuracy"] == pytest.approx(g["y_true"].mean() / mae)


def test_fairness_gate_is_metricframe_ratio_over_eligible_groups():
    from fairlearn.metrics import MetricFrame

    df = pd.concat([_churn_group(1, 200, 180, 200), _churn_group(2, 200, 150, 200), _churn_group(3, 40, 4, 40)])
    res = fairness.evaluate(df, "churn")
    big = df[df["city_tier"] < 3]  # tier 3 is below the minimum group size: reported, not gated
    mf = MetricFrame(metrics=fairness.tpr, y_true=big["y_true"], y_pred=big["y_pred"],
                     sensitive_features=big["city_tier"])
    assert res.disparate_impact == pytest.approx(mf.ratio()) == pytest.approx(150 / 180)
    tiers = res.report[res.report["attribute"] == "city_tier"].set_index("group_value")
    assert tiers.loc["3", "tpr"] == pytest.approx(0.1) and not tiers.loc["3", "gated"]
    assert "TPR" in res.reason and "(city_tier)" in res.reason
    ltv = fairness.evaluate(_random_holdout("ltv"), "ltv")
    assert "mean LTV / MAE" in ltv.reason and "equal-opportunity" not in ltv.reason


# ----------------------------------------------------------------------------------------------- holdout rule


def test_holdout_rule_needs_every_training_label_to_end_by_the_holdout():
    from datetime import date

    from ulm.ml.registry import holdout_unseen, labels_seen_until

    cutoffs = ["2025-08-31", "2025-09-30"]
    assert labels_seen_until(cutoffs, 30) == date(2025, 10, 30)
    assert holdout_unseen(cutoffs, 30, date(2025, 10, 31))  # 2025-09-30 + 30 <= 2025-10-31
    assert not holdout_unseen(cutoffs, 30, date(2025, 10, 29))  # labels reach past the holdout day
    assert not holdout_unseen(cutoffs, 30, date(2025, 9, 30))  # the holdout cutoff itself was trained on
    assert holdout_unseen([], 30, date(2025, 9, 30))  # unknown cutoffs (old versions): not refused


# ----------------------------------------------------------------------------------------------- run identity


def test_data_digest_covers_every_row_unlike_mlflows():
    from mlflow.data.digest_utils import compute_pandas_digest

    from ulm.ml.train import data_digest

    frame = pd.DataFrame({"person_id": [f"p{i}" for i in range(12_000)], "x": np.arange(12_000, dtype=float)})
    changed = frame.copy()
    changed.loc[11_999, "x"] = -1.0  # beyond MLflow's first 10,000 rows
    assert compute_pandas_digest(frame) == compute_pandas_digest(changed)
    assert data_digest(frame) != data_digest(changed) and data_digest(frame) == data_digest(frame.copy())
    assert len(data_digest(frame)) == 16


def test_artifact_root_follows_the_tracking_uri(tmp_path, monkeypatch):
    from ulm.ml import tracking

    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.artifact_root() == tmp_path / "mlflow" / "artifacts"
    # what mlflow.set_tracking_uri does to the environment must not change the answer
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.default_uri())
    assert tracking.artifact_root() == tmp_path / "mlflow" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere' / 'm.db'}")
    assert tracking.artifact_root() == tmp_path / "elsewhere" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.artifact_root() is None  # the server decides
    assert tracking.run_name("ulm_churn", "2025-12-31", "3f2a9c1e77aa") == "ulm_churn-2025-12-31-3f2a9c1e"
    assert "metrics.`roc_auc`" in tracking.default_columns("churn")


# ----------------------------------------------------------------------------------------------- console


def test_third_party_warnings_go_to_the_debug_log(caplog, recwarn):
    import logging
    import warnings

    from ulm.ml.quiet import third_party_quiet

    def warn_from(filename: str, text: str) -> None:
        warnings.warn_explicit(text, UserWarning, filename, 1)

    level = logging.getLogger("mlflow").level
    with caplog.at_level("DEBUG", logger="ulm.ml.warnings"), third_party_quiet():
        for name in ("mlflow.store.db.utils", "arviz.preview", "pymc"):  # MLflow's migration notice, ArviZ's import
            assert not logging.getLogger(name).isEnabledFor(logging.WARNING), name
        warn_from("/x/.venv/lib/python3.11/site-packages/mlflow/types/utils.py", "Hint: integer column")
        warn_from("/x/.venv/lib/python3.11/site-packages/mlflow/types/utils.py", "Hint: integer column")
        warn_from("/work/ulm/ml/train.py", "ours")
    assert [r.getMessage() for r in caplog.records if r.name == "ulm.ml.warnings"] == [
        "UserWarning in /x/.venv/lib/python3.11/site-packages/mlflow/types/utils.py:1: Hint: integer column"]
    assert [str(w.message) for w in recwarn] == ["ours"]  # ULM's own warnings still surface
    assert logging.getLogger("mlflow").level == level  # restored


def test_requirement_mismatches_name_only_the_packages_the_pickle_depends_on():
    from ulm.ml.score import requirement_mismatches

    installed = {"lightgbm": "4.6.0", "scikit-learn": "1.7.2", "numpy": "2.3.4", "pandas": "3.0.0"}.get

    def version(name):
        if installed(name) is None:
            import importlib.metadata

            raise importlib.metadata.PackageNotFoundError(name)
        return installed(name)

    reqs = ("mlflow==3.17.0\nlightgbm==4.6.0\nscikit_learn==1.6.1\nnumpy==2.3.4 ; python_version >= '3.11'\n"
            "cloudpickle==3.1.1\npandas>=2\n")
    assert requirement_mismatches(reqs, version) == ["mlflow==3.17.0 (installed none)",
                                                     "scikit-learn==1.6.1 (installed 1.7.2)"]
    assert requirement_mismatches("lightgbm==4.6.0\n", version) == []
