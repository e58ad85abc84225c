"""Registry with a real MLflow store (sqlite in tmp_path): promotion against baseline and champion."""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from ulm.ml import fairness, registry, tracking
from ulm.ml.models import UlmModel, fit_lgbm, fit_logistic

FEATURES = ["x1", "x2", "platform"]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure()
    yield tmp_path


def _data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                      "platform": rng.choice(["content", "live"], n),
                      "city_tier": rng.integers(1, 4, n), "age_band": rng.choice(["18-24", "31-40"], n)})
    logit = 1.5 * x["x1"] + np.sin(3 * x["x2"]) * 2  # non-linear: boosting beats logistic regression
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()


def _log(model: UlmModel, example: pd.DataFrame) -> tuple[str, str]:
    with mlflow.start_run(experiment_id=tracking.experiment_id("churn")) as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=model, input_example=example[FEATURES].head(3),
                                       pip_requirements=["lightgbm", "scikit-learn", "pandas"])
    return run.info.run_id, info.model_uri


def _decide(model: UlmModel, x: pd.DataFrame, y: np.ndarray, baseline: np.ndarray) -> registry.Decision:
    run_id, uri = _log(model, x)
    pred = model.predict_frame(x)
    fair = fairness.evaluate(x.assign(y_true=y, y_pred=pred), "churn")
    return registry.register_and_decide(task="churn", run_id=run_id, model_uri=uri, holdout_x=x[FEATURES],
                                        y_true=y, y_pred=pred, baseline_pred=baseline, fairness=fair)


def test_promote_beat_baseline_then_reject_worse(store):
    x_tr, y_tr = _data(4000, 1)
    x_ho, y_ho = _data(2000, 2)
    logit = UlmModel("churn", "logistic", FEATURES, fit_logistic(x_tr, y_tr, FEATURES))
    base = logit.predict_frame(x_ho)
    good = UlmModel("churn", "lgbm", FEATURES, fit_lgbm(x_tr, y_tr, FEATURES, "binary", {"num_boost_round": 80}))

    first = _decide(good, x_ho, y_ho, base)
    assert first.promoted and first.compared_against == "baseline", first.reason
    assert first.candidate_score > first.reference_score + 0.005

    worse = UlmModel("churn", "lgbm", ["x2"], fit_lgbm(x_tr, y_tr, ["x2"], "binary", {"num_boost_round": 20}))
    second = _decide(worse, x_ho, y_ho, base)
    assert not second.promoted and second.compared_against == f"champion v{first.version}", second.reason

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("ulm_churn", "champion").version) == first.version
    assert str(client.get_model_version_by_alias("ulm_churn", "challenger").version) == second.version
    run = client.get_run(client.get_model_version("ulm_churn", second.version).run_id)
    assert run.data.tags["promotion_decision"] == "rejected"
    assert "vs champion" in run.data.tags["promotion_reason"]

    champion = mlflow.pyfunc.load_model("models:/ulm_churn@champion")
    np.testing.assert_allclose(champion.predict(x_ho[FEATURES]), good.predict_frame(x_ho), rtol=1e-9)
    assert str(store) in tracking.tracking_uri()


def test_unfair_model_not_promoted(store):
    x_tr, y_tr = _data(3000, 3)
    x_ho, y_ho = _data(1500, 4)
    good = UlmModel("churn", "lgbm", FEATURES, fit_lgbm(x_tr, y_tr, FEATURES, "binary", {"num_boost_round": 60}))
    pred = good.predict_frame(x_ho)
    pred = np.where(x_ho["city_tier"] == 3, pred * 0.3, pred)  # misses most churners in one tier
    fair = fairness.evaluate(x_ho.assign(y_true=y_ho, y_pred=pred), "churn")
    run_id, uri = _log(good, x_ho)
    d = registry.register_and_decide(task="churn", run_id=run_id, model_uri=uri, holdout_x=x_ho[FEATURES],
                                     y_true=y_ho, y_pred=pred, baseline_pred=np.full(len(y_ho), 0.5) + 0 * pred,
                                     fairness=fair)
    assert not fair.passed and not d.promoted and "fairness" in d.reason
