"""Registry with a real MLflow store (sqlite in tmp_path): promotion against baseline and champion, the holdout rule,
artifacts under the configured location, quiet registration."""
from __future__ import annotations

import logging
from datetime import date

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
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # MLflow's fallback artifact root is ./mlruns: it must stay unused
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


def _decide(model: UlmModel, x: pd.DataFrame, y: np.ndarray, baseline: np.ndarray,
            holdout_cutoff: date | None = None) -> registry.Decision:
    run_id, uri = _log(model, x)
    pred = model.predict_frame(x)
    fair = fairness.evaluate(x.assign(y_true=y, y_pred=pred), "churn")
    return registry.register_and_decide(task="churn", run_id=run_id, model_uri=uri, holdout_x=x[FEATURES],
                                        y_true=y, y_pred=pred, baseline_pred=baseline, fairness=fair,
                                        horizon_days=30, holdout_cutoff=holdout_cutoff)


def test_promote_beat_baseline_then_reject_worse(store, capfd, caplog):
    caplog.set_level(logging.INFO, logger="ulm.ml.registry")
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
    # artifacts under <data dir>/mlflow/artifacts, nothing in the working directory
    exp = mlflow.get_experiment_by_name("ulm-churn")
    assert exp.artifact_location == (store / "mlflow" / "artifacts" / "ulm-churn").as_uri()
    assert run.info.artifact_uri.startswith(exp.artifact_location)
    assert any((store / "mlflow" / "artifacts" / "ulm-churn").rglob("MLmodel"))
    assert not (store / "cwd" / "mlruns").exists() and not list((store / "cwd").iterdir())
    # one log line per decision, no registration chatter on the console
    lines = [r.getMessage() for r in caplog.records if r.name == "ulm.ml.registry"]
    assert len(lines) == 2 and lines[0].startswith(f"ulm_churn v{first.version} promoted vs baseline: ROC-AUC")
    assert "Successfully registered" not in capfd.readouterr().err


def test_champion_trained_on_the_holdout_is_not_compared(store):
    """Out-of-order training days: a champion trained past the candidate's holdout cannot be compared on it."""
    x_tr, y_tr = _data(4000, 5)
    x_ho, y_ho = _data(2000, 6)
    base = np.full(len(y_ho), 0.5) + 0.01 * np.arange(len(y_ho)) / len(y_ho)
    later = UlmModel("churn", "lgbm", ["x2"], fit_lgbm(x_tr, y_tr, ["x2"], "binary", {"num_boost_round": 20}),
                     horizon_days=30, train_cutoffs=["2025-09-30", "2025-10-31"])
    first = _decide(later, x_ho, y_ho, base, holdout_cutoff=date(2025, 11, 30))
    assert first.promoted, first.reason
    better = UlmModel("churn", "lgbm", FEATURES, fit_lgbm(x_tr, y_tr, FEATURES, "binary", {"num_boost_round": 80}),
                      horizon_days=30, train_cutoffs=["2025-07-31", "2025-08-31"])
    # its holdout 2025-09-30 is one of the champion's training cutoffs: no holdout is unseen by both
    second = _decide(better, x_ho, y_ho, base, holdout_cutoff=date(2025, 9, 30))
    assert not second.promoted and second.compared_against == f"champion v{first.version}"
    assert "no holdout is unseen by both" in second.reason and np.isnan(second.reference_score)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("ulm_churn", "champion").version) == first.version
    # the same model on a holdout after the champion's labels is compared (and wins: it has the informative x1)
    third = _decide(better, x_ho, y_ho, base, holdout_cutoff=date(2025, 11, 30))
    assert third.promoted and third.compared_against == f"champion v{first.version}", third.reason
    assert third.candidate_score > third.reference_score
    tags = client.get_run(client.get_model_version("ulm_churn", third.version).run_id).data.tags
    assert tags["promotion_holdout_cutoff"] == "2025-11-30"


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
