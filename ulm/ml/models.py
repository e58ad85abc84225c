"""Model estimators and the MLflow pyfunc wrapper that the registry stores and scoring loads.

Every registered model takes the feature frame of ``ml.feature_snapshots`` (feature columns only) and
returns one number per row: churn probability (``ulm_churn``) or predicted net revenue over the model's
LTV horizon (``ulm_ltv``). Categorical levels come from the landing contract, so train and score encode
identically without a fitted encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ulm.core.contract import AGE_BANDS, CHANNELS, PLATFORMS
from ulm.core.settings import settings

CATEGORIES: dict[str, tuple[str, ...]] = {
    "acquisition_channel": CHANNELS,
    "platform": PLATFORMS,
    "age_band": AGE_BANDS,
}
PARALLEL_PREDICT_ROWS = 50_000
LOGISTIC_PARAMS: dict[str, Any] = {"max_iter": 500}  # everything else: scikit-learn's defaults (L2, C=1, lbfgs)


def lgbm_threads() -> int:
    """LightGBM threads for training and small predictions (``ULM_ML_THREADS``, default 1): OpenMP busy-waits badly
    when the cores are shared (Airflow workers, dbt), so one thread is the robust default."""
    return settings().ml_threads


def predict_threads() -> int:
    """Threads for frames of ``PARALLEL_PREDICT_ROWS`` or more (``ULM_ML_PREDICT_THREADS``, default all cores):
    batch prediction is one long parallel region, and results do not depend on the thread count."""
    return settings().ml_predict_threads


def prepare(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Select ``features``; categoricals -> fixed-level pandas categories, everything else -> float64."""
    out = {}
    for col in features:
        if col in CATEGORIES:
            out[col] = pd.Categorical(frame[col].astype("object"), categories=list(CATEGORIES[col]))
        else:
            out[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index)


def fit_logistic(x: pd.DataFrame, y: np.ndarray, features: list[str]) -> Pipeline:
    """Baseline churn model: impute + scale numerics, one-hot categoricals, L2 logistic regression."""
    cats = [c for c in features if c in CATEGORIES]
    nums = [c for c in features if c not in CATEGORIES]
    pre = ColumnTransformer([
        ("num", Pipeline([("imp", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                          ("sc", StandardScaler())]), nums),
        ("cat", OneHotEncoder(categories=[list(CATEGORIES[c]) for c in cats], handle_unknown="ignore"), cats),
    ])
    model = Pipeline([("pre", pre), ("lr", LogisticRegression(**LOGISTIC_PARAMS))])
    xx = prepare(x, features)
    xx[cats] = xx[cats].astype("object").fillna("missing")
    return model.fit(xx, y)


def lgbm_params(objective: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every LightGBM hyperparameter :func:`fit_lgbm` trains with (``num_boost_round`` included): fixed, modest
    capacity; ``params`` overrides."""
    p = {"objective": objective, "num_boost_round": 200, "learning_rate": 0.08, "num_leaves": 63,
         "min_data_in_leaf": 100, "max_bin": 63, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
         "lambda_l2": 1.0, "num_threads": lgbm_threads(), "verbose": -1, "seed": 7, "deterministic": True}
    if objective == "tweedie":
        p["tweedie_variance_power"] = 1.3
    p.update(params or {})
    return p


def fit_lgbm(x: pd.DataFrame, y: np.ndarray, features: list[str], objective: str,
             params: dict[str, Any] | None = None) -> lgb.Booster:
    """LightGBM booster (``binary`` for churn, ``tweedie`` for LTV) with the hyperparameters of :func:`lgbm_params`."""
    p = lgbm_params(objective, params)
    rounds = int(p.pop("num_boost_round"))
    data = lgb.Dataset(prepare(x, features), label=y, free_raw_data=True)
    return lgb.train(p, data, num_boost_round=rounds)


def logistic_hyperparameters(pipeline: Pipeline) -> dict[str, Any]:
    """Every hyperparameter of the fitted baseline: the regression's and the imputation / scaling steps'."""
    lr = pipeline.named_steps["lr"].get_params()
    num = pipeline.named_steps["pre"].named_transformers_["num"]
    imp = num.named_steps["imp"].get_params()
    scale = num.named_steps["sc"].get_params()
    return {**lr, **{f"impute_{k}": imp[k] for k in ("strategy", "add_indicator")},
            **{f"scale_{k}": scale[k] for k in ("with_mean", "with_std")}}


@dataclass
class UlmModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: ``kind`` is lgbm | logistic; ``horizon_days`` is the label horizon (churn window or LTV
    horizon); ``train_cutoffs`` are the snapshot days it was trained on (the promotion's holdout rule reads both)."""

    task: str
    kind: str
    features: list[str]
    estimator: Any
    horizon_days: int | None = None
    train_cutoffs: list[str] = field(default_factory=list)
    top_features: list[str] = field(default_factory=list)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        x = prepare(frame, self.features)
        if self.kind == "lgbm":
            threads = predict_threads() if len(x) >= PARALLEL_PREDICT_ROWS else lgbm_threads()
            return np.asarray(self.estimator.predict(x, num_threads=threads), dtype="float64")
        cats = [c for c in self.features if c in CATEGORIES]
        x[cats] = x[cats].astype("object").fillna("missing")
        return self.estimator.predict_proba(x)[:, 1]

    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: D102 - MLflow entry point
        return self.predict_frame(pd.DataFrame(model_input))


def historical_average_ltv(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Baseline (docs/METRICS.md#machine-learning): AOV x purchase frequency x lifetime.

    AOV = net revenue / purchases over the last 365 days, frequency = purchases per day over the same
    window (or over the tenure when shorter), lifetime = the horizon in days.
    """
    window = np.minimum(frame["tenure_days"].to_numpy(dtype="float64") + 1, 365.0)
    purchases = frame["purchases_365d"].to_numpy(dtype="float64")
    revenue = frame["net_revenue_365d"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        aov = np.where(purchases > 0, revenue / purchases, 0.0)
    return np.clip(aov * purchases / np.maximum(window, 1.0) * horizon_days, 0.0, None)
