"""Training entry point (docs/METRICS.md#machine-learning): snapshots -> churn and LTV models -> MLflow runs ->
registry decision.

``train(as_of, warehouse)``:

1. rebuilds ``ml.feature_snapshots`` (month-end cutoffs up to ``as_of``) from the published marts;
2. time split per task: holdout = the latest cutoff whose label is fully observed; training = older cutoffs
   whose label window ends on or before the holdout cutoff (no label overlaps the holdout period);
3. churn: logistic-regression baseline + LightGBM; LTV: historical-average baseline, LightGBM Tweedie, and
   BG/NBD + Gamma-Gamma fitted point-in-time at the holdout cutoff on ``marts.fct_clv_snapshots`` (reported for
   comparison);
4. one MLflow run per task (params, metrics, dataset digests, feature list, signature, PII-free input
   example, plots, fairness and drift reports, model), registration and promotion (``ulm.ml.registry``);
5. fairness and drift reports into ``ml.fairness_report`` / ``ml.drift_report``; PSI alerts into ``ml.alerts``.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.ml import clv, drift, fairness, features, plots, registry, tracking
from ulm.ml import metrics as M
from ulm.ml.models import UlmModel, fit_lgbm, fit_logistic, historical_average_ltv
from ulm.ml.reports import write_reports
from ulm.warehouse import connect_read_only

log = logging.getLogger("ulm.ml.train")

MAX_TRAIN_CUTOFFS = 12  # most recent training snapshots used (bounds cost; older behaviour matters less)
MAX_TRAIN_ROWS = 250_000  # uniform seeded sample of the training snapshots beyond this (2-core budget)
MAX_BASELINE_ROWS = 100_000  # the logistic baseline converges long before this
MAX_DRIFT_ROWS = 50_000
DRIFT_TOP_FEATURES = 10
PIP_REQUIREMENTS = ["lightgbm", "scikit-learn", "pandas", "numpy", "scipy"]


@dataclass
class Split:
    label: str
    horizon_days: int
    train: pd.DataFrame
    holdout: pd.DataFrame
    holdout_cutoff: date
    train_cutoffs: list[date]


def time_split(snaps: pd.DataFrame, label: str, horizon_days: int) -> Split | None:
    """Holdout = latest fully labelled cutoff; train = cutoffs t with t + horizon <= holdout cutoff."""
    labelled = snaps.loc[snaps[label].notna(), "snapshot_date"].drop_duplicates().sort_values()
    if labelled.empty:
        return None
    holdout_cutoff = labelled.iloc[-1]
    train_cutoffs = [t for t in labelled if t + pd.Timedelta(days=horizon_days) <= holdout_cutoff]
    train_cutoffs = train_cutoffs[-MAX_TRAIN_CUTOFFS:]
    if not train_cutoffs:
        return None
    train = snaps[snaps["snapshot_date"].isin(train_cutoffs) & snaps[label].notna()]
    train = _cap(train, MAX_TRAIN_ROWS)
    holdout = snaps[(snaps["snapshot_date"] == holdout_cutoff) & snaps[label].notna()]
    return Split(label, horizon_days, train, holdout, holdout_cutoff.date(), [t.date() for t in train_cutoffs])


def _cap(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=7).sort_index()


def churn_split(snaps: pd.DataFrame, horizon: int | None = None) -> Split:
    h = int(horizon or param("churn_horizon_days"))
    split = time_split(snaps, f"churn_{h}d", h)
    if split is None:
        raise UlmError(f"ml.feature_snapshots: column churn_{h}d has fewer than two usable labelled cutoffs "
                       f"(rule: need one training and one holdout snapshot {h} days apart)")
    return split


def ltv_split(snaps: pd.DataFrame) -> Split:
    """Full ``ltv_horizon_days`` when history allows, else the longest shorter horizon that does."""
    for h in features.ltv_horizons():
        split = time_split(snaps, f"ltv_{h}d", h)
        if split is not None:
            if h != int(param("ltv_horizon_days")):
                log.warning("history too short for a %s-day LTV label; using %s days", param("ltv_horizon_days"), h)
            return split
    raise UlmError("ml.feature_snapshots: column ltv_*d has no usable labelled cutoffs "
                   "(rule: need one training and one holdout snapshot a horizon apart)")


def read_snapshots(warehouse: Path) -> pd.DataFrame:
    with connect_read_only(warehouse) as con:
        df = con.execute("select * from ml.feature_snapshots order by snapshot_date, person_id").df()
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"])
    return features.normalize_types(df)


# ----------------------------------------------------------------------------------------------- logging


def _log_common(split: Split, feats: list[str], model: UlmModel, out: Path) -> str:
    """Params, datasets, feature list, model with signature + PII-free example; returns the model URI."""
    mlflow.log_params({"horizon_days": split.horizon_days, "label": split.label,
                       "holdout_cutoff": str(split.holdout_cutoff),
                       "train_cutoffs": ",".join(str(t) for t in split.train_cutoffs),
                       "n_train": len(split.train), "n_holdout": len(split.holdout), "n_features": len(feats)})
    for frame, context in ((split.train, "training"), (split.holdout, "holdout")):
        ds = mlflow.data.from_pandas(frame[feats + [split.label]], targets=split.label,
                                     name=f"feature_snapshots_{context}", source="ml.feature_snapshots")
        mlflow.log_input(ds, context=context)
    (out / "features.json").write_text(json.dumps(feats, indent=1))
    mlflow.log_artifact(str(out / "features.json"))
    example = split.holdout[feats].head(5)  # no person_id / keys: only model inputs
    signature = infer_signature(example, model.predict_frame(example))
    info = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                   input_example=example, pip_requirements=PIP_REQUIREMENTS)
    return info.model_uri


def _log_metrics(prefix: str, values: dict[str, float]) -> None:
    mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in values.items() if v is not None and np.isfinite(v)})


def _drift(split: Split, train_pred: np.ndarray, holdout_pred: np.ndarray, top: list[str]) -> pd.DataFrame:
    rep = drift.drift_report(_cap(split.train, MAX_DRIFT_ROWS), split.holdout, top)
    score = drift.drift_report(pd.DataFrame({"score": train_pred}), pd.DataFrame({"score": holdout_pred}), ["score"])
    return pd.concat([score, rep], ignore_index=True)


# ----------------------------------------------------------------------------------------------- tasks


def _train_churn(split: Split, feats: list[str], out: Path) -> dict:
    y_tr, y_ho = split.train[split.label].to_numpy(int), split.holdout[split.label].to_numpy(int)
    base_rows = _cap(split.train, MAX_BASELINE_ROWS)
    baseline = UlmModel("churn", "logistic", feats,
                        fit_logistic(base_rows, base_rows[split.label].to_numpy(int), feats))
    booster = fit_lgbm(split.train, y_tr, feats, "binary")
    model = UlmModel("churn", "lgbm", feats, booster, train_cutoffs=[str(t) for t in split.train_cutoffs])
    p_base, p_model = baseline.predict_frame(split.holdout), model.predict_frame(split.holdout)
    m_base, m_model = M.churn_metrics(y_ho, p_base), M.churn_metrics(y_ho, p_model)
    fair = fairness.evaluate(split.holdout.assign(y_true=y_ho, y_pred=p_model), "churn")
    plot_paths = plots.roc_pr(y_ho, {"lightgbm": p_model, "logistic": p_base}, out)
    plot_paths += [plots.calibration(y_ho, p_model, out), plots.lift_gain(y_ho, p_model, out)]
    imp_path, importance = plots.feature_importance(booster, _prepared(split.holdout, feats), out)
    top = importance["feature"].head(DRIFT_TOP_FEATURES).tolist()
    model.top_features = top
    drift_rep = _drift(split, model.predict_frame(_cap(split.train, MAX_DRIFT_ROWS)), p_model, top)
    M.calibration_table(y_ho, p_model).to_csv(out / "calibration.csv", index=False)
    return {"model": model, "y_true": y_ho, "y_pred": p_model, "baseline_pred": p_base, "metrics": m_model,
            "baseline_metrics": m_base, "fairness": fair, "drift": drift_rep, "importance": importance,
            "plots": plot_paths + [imp_path, out / "calibration.csv"]}


def _bgnbd_holdout(warehouse: Path, split: Split) -> tuple[dict, clv.ClvParams | None]:
    """BG/NBD + GG fitted on the purchase history up to the holdout cutoff (the ``fct_clv_snapshots`` rows of that
    month end), scored on the holdout persons."""
    with connect_read_only(warehouse) as con:
        summary = features.clv_snapshot(con, split.holdout_cutoff)
    try:
        prm = clv.fit_clv(summary, time_unit_days=7)
    except UlmError as exc:
        log.warning("BG/NBD comparison skipped: %s", exc)
        return {}, None
    pred = clv.predict_ltv(prm, summary, split.horizon_days).set_index("person_id")["predicted_ltv"]
    y_pred = split.holdout["person_id"].map(pred).fillna(0.0).to_numpy()
    return M.ltv_metrics(split.holdout[split.label].to_numpy(float), y_pred), prm


def _train_ltv(split: Split, feats: list[str], out: Path, warehouse: Path) -> dict:
    y_tr, y_ho = split.train[split.label].to_numpy(float), split.holdout[split.label].to_numpy(float)
    booster = fit_lgbm(split.train, np.clip(y_tr, 0, None), feats, "tweedie")
    model = UlmModel("ltv", "lgbm", feats, booster, horizon_days=split.horizon_days,
                     train_cutoffs=[str(t) for t in split.train_cutoffs])
    p_model = np.clip(model.predict_frame(split.holdout), 0, None)
    p_base = historical_average_ltv(split.holdout, split.horizon_days)
    m_model, m_base = M.ltv_metrics(y_ho, p_model), M.ltv_metrics(y_ho, p_base)
    m_bgnbd, prm = _bgnbd_holdout(warehouse, split)
    fair = fairness.evaluate(split.holdout.assign(y_true=y_ho, y_pred=p_model), "ltv")
    imp_path, importance = plots.feature_importance(booster, _prepared(split.holdout, feats), out)
    top = importance["feature"].head(DRIFT_TOP_FEATURES).tolist()
    model.top_features = top
    plot_paths = [plots.ltv_deciles(y_ho, p_model, out), plots.lift_gain(y_ho, p_model, out, "revenue_gain.png"),
                  imp_path]
    drift_rep = _drift(split, model.predict_frame(_cap(split.train, MAX_DRIFT_ROWS)), p_model, top)
    if prm is not None:
        (out / "bgnbd_gamma_gamma_params.json").write_text(json.dumps(prm.as_dict(), indent=1))
        plot_paths.append(out / "bgnbd_gamma_gamma_params.json")
    return {"model": model, "y_true": y_ho, "y_pred": p_model, "baseline_pred": p_base, "metrics": m_model,
            "baseline_metrics": m_base, "bgnbd_metrics": m_bgnbd, "fairness": fair, "drift": drift_rep,
            "importance": importance, "plots": plot_paths}


def _prepared(frame: pd.DataFrame, feats: list[str]) -> pd.DataFrame:
    from ulm.ml.models import prepare

    return prepare(frame.head(5000), feats)


def _run_task(task: str, split: Split, feats: list[str], warehouse: Path) -> dict:
    """Fit, log, register, decide for one task inside its own MLflow run."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"ulm-{task}-") as tmp, \
            mlflow.start_run(experiment_id=tracking.experiment_id(task)) as run:
        out = Path(tmp)
        res = _train_churn(split, feats, out) if task == "churn" else _train_ltv(split, feats, out, warehouse)
        _log_metrics("", res["metrics"])
        _log_metrics("baseline_", res["baseline_metrics"])
        _log_metrics("bgnbd_", res.get("bgnbd_metrics", {}))
        res["fairness"].report.to_csv(out / "fairness_report.csv", index=False)
        res["drift"].to_csv(out / "drift_report.csv", index=False)
        res["importance"].to_csv(out / "feature_importance.csv", index=False)
        mlflow.log_metric("fairness_disparate_impact", res["fairness"].disparate_impact)
        for path in [*res["plots"], out / "fairness_report.csv", out / "drift_report.csv",
                     out / "feature_importance.csv"]:
            mlflow.log_artifact(str(path))
        model_uri = _log_common(split, feats, res["model"], out)
        mlflow.log_metric("train_seconds", time.perf_counter() - start)
        decision = registry.register_and_decide(
            task=task, run_id=run.info.run_id, model_uri=model_uri, holdout_x=split.holdout[feats],
            y_true=res["y_true"], y_pred=res["y_pred"], baseline_pred=res["baseline_pred"],
            fairness=res["fairness"], horizon_days=split.horizon_days if task == "ltv" else None)
    res.update(run_id=run.info.run_id, decision=decision, seconds=time.perf_counter() - start)
    return res


# ----------------------------------------------------------------------------------------------- entry


def train(as_of: date, warehouse: Path, tasks: tuple[str, ...] = ("churn", "ltv"),
          churn_horizon: int | None = None) -> dict[str, dict]:
    """Train, log, register and decide promotion for each task; returns per-task results."""
    tracking.configure()
    features.build_snapshots(warehouse, as_of)
    snaps = read_snapshots(warehouse)
    feats = features.feature_columns(snaps)
    results: dict[str, dict] = {}
    for task in tasks:
        split = churn_split(snaps, churn_horizon) if task == "churn" else ltv_split(snaps)
        results[task] = _run_task(task, split, feats, warehouse)
        log.info("%s: %s in %.1fs", task, results[task]["decision"].reason, results[task]["seconds"])
    write_reports(warehouse, as_of, results)
    return results
