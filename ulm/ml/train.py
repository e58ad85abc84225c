"""Training entry point (docs/METRICS.md#machine-learning): snapshots -> churn and LTV models -> MLflow runs ->
registry decision.

``train(as_of, warehouse)``:

1. rebuilds ``ml.feature_snapshots`` (month-end cutoffs up to ``as_of``) from the published marts;
2. time split per task: holdout = the latest cutoff whose label is fully observed; training = older cutoffs
   whose label window ends on or before the holdout cutoff (no label overlaps the holdout period);
3. churn: logistic-regression baseline + LightGBM; LTV: historical-average baseline, LightGBM Tweedie, and
   BG/NBD + Gamma-Gamma fitted point-in-time at the holdout cutoff on ``marts.fct_clv_snapshots`` (reported for
   comparison);
4. one MLflow run per task, named ``<model>-<as_of>-<run id prefix>`` (docs/ML.md#what-each-run-carries): as-of
   day, cutoffs, population and full-content data digests as params, every hyperparameter, metrics, dataset
   inputs, feature list, signature, PII-free input example, plots, fairness and drift reports, model; then
   registration and promotion (``ulm.ml.registry``) and a description stating the decision;
5. fairness and drift reports into ``ml.fairness_report`` / ``ml.drift_report``; PSI alerts into ``ml.alerts``.
"""
from __future__ import annotations

import hashlib
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
from mlflow import MlflowClient
from mlflow.models import infer_signature

from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.ml import clv, drift, fairness, features, plots, registry, tracking
from ulm.ml import metrics as M
from ulm.ml.models import (
    UlmModel,
    fit_lgbm,
    fit_logistic,
    historical_average_ltv,
    lgbm_params,
    logistic_hyperparameters,
)
from ulm.ml.quiet import quiet
from ulm.ml.reports import write_reports
from ulm.warehouse import connect_read_only

log = logging.getLogger("ulm.ml.train")

MAX_TRAIN_CUTOFFS = 12  # most recent training snapshots used (bounds cost; older behaviour matters less)
MAX_TRAIN_ROWS = 250_000  # uniform seeded sample of the training snapshots beyond this (2-core budget)
MAX_BASELINE_ROWS = 100_000  # the logistic baseline converges long before this
MAX_DRIFT_ROWS = 50_000
DRIFT_TOP_FEATURES = 10
PIP_REQUIREMENTS = ["lightgbm", "scikit-learn", "pandas", "numpy", "scipy"]
CLV_TIME_UNIT_DAYS = 7  # BG/NBD time unit: weeks, the CDNOW convention


@dataclass
class Split:
    label: str
    horizon_days: int
    train: pd.DataFrame
    holdout: pd.DataFrame
    holdout_cutoff: date
    train_cutoffs: list[date]
    n_train_labelled: int  # labelled training rows before the MAX_TRAIN_ROWS sample


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
    labelled_train = snaps[snaps["snapshot_date"].isin(train_cutoffs) & snaps[label].notna()]
    holdout = snaps[(snaps["snapshot_date"] == holdout_cutoff) & snaps[label].notna()]
    return Split(label, horizon_days, _cap(labelled_train, MAX_TRAIN_ROWS), holdout, holdout_cutoff.date(),
                 [t.date() for t in train_cutoffs], len(labelled_train))


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


def data_digest(frame: pd.DataFrame) -> str:
    """Digest of every row and column of ``frame`` (16 hex characters). MLflow's dataset digest hashes only the
    first 10,000 rows, so two training sets that differ further down would share it."""
    h = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def _digests(split: Split, feats: list[str]) -> dict[str, str]:
    cols = ["snapshot_date", "person_id", *feats, split.label]
    train, holdout = data_digest(split.train[cols]), data_digest(split.holdout[cols])
    return {"train_digest": train, "holdout_digest": holdout,
            "data_digest": hashlib.sha256(f"{train}{holdout}".encode()).hexdigest()[:16]}


def _run_params(task: str, split: Split, feats: list[str], as_of: date, digests: dict[str, str]) -> dict:
    """What the run was trained and evaluated on: as-of day, cutoffs, population, sizes, digests."""
    return {"as_of": str(as_of), "task": task, "model": tracking.MODEL_NAMES[task], "label": split.label,
            "horizon_days": split.horizon_days, "holdout_cutoff": str(split.holdout_cutoff),
            "train_cutoffs": ",".join(str(t) for t in split.train_cutoffs), "n_train_cutoffs": len(split.train_cutoffs),
            "population": features.population_rule(),
            "population_active_days": int(param("snapshot_population_active_days")),
            "n_train": len(split.train), "n_train_labelled": split.n_train_labelled,
            "n_train_persons": int(split.train["person_id"].nunique()), "n_holdout": len(split.holdout),
            "n_features": len(feats), "max_train_rows": MAX_TRAIN_ROWS, "max_train_cutoffs": MAX_TRAIN_CUTOFFS,
            **digests}


def _gate_params(task: str) -> dict:
    keys = ["promotion_min_auc_gain" if task == "churn" else "promotion_min_mae_gain",
            "fairness_min_disparate_impact", "drift_psi_alert"]
    return {**{f"gate.{k}": param(k) for k in keys}, "gate.fairness_min_group_size": fairness.min_group_size(),
            "gate.classification_threshold": M.CLASSIFICATION_THRESHOLD}


def _log_model(split: Split, feats: list[str], model: UlmModel, out: Path) -> str:
    """Datasets, feature list, model with signature + PII-free example; returns the model URI."""
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


def _description(split: Split, as_of: date, d: registry.Decision, digests: dict[str, str]) -> str:
    """The run's description (``mlflow.note.content``): the promotion decision first, then what it rests on."""
    if d.promoted:
        head = f"**{d.model_name} v{d.version}: promoted** to `@champion` (and `@challenger`)."
    else:
        head = f"**{d.model_name} v{d.version}: not promoted**; it is `@challenger`, the champion is unchanged."
    cutoffs = split.train_cutoffs
    return "\n\n".join([
        head,
        f"Compared against {d.compared_against} on the {split.holdout_cutoff} holdout ({len(split.holdout):,} "
        f"persons, label `{split.label}`). Reason: {d.reason}.",
        f"Trained as of {as_of} on {len(cutoffs)} month-end cutoffs {cutoffs[0]} .. {cutoffs[-1]} "
        f"({len(split.train):,} rows, {split.train['person_id'].nunique():,} persons); population: "
        f"{features.population_rule()}. Data digest `{digests['data_digest']}` (training `{digests['train_digest']}`, "
        f"holdout `{digests['holdout_digest']}`).",
        "Holdout rule: a champion is compared only on a holdout neither model was trained on (docs/ML.md#promotion).",
    ])


# ----------------------------------------------------------------------------------------------- tasks


def _train_churn(split: Split, feats: list[str], out: Path) -> dict:
    y_tr, y_ho = split.train[split.label].to_numpy(int), split.holdout[split.label].to_numpy(int)
    base_rows = _cap(split.train, MAX_BASELINE_ROWS)
    base_pipe = fit_logistic(base_rows, base_rows[split.label].to_numpy(int), feats)
    baseline = UlmModel("churn", "logistic", feats, base_pipe)
    booster = fit_lgbm(split.train, y_tr, feats, "binary")
    model = UlmModel("churn", "lgbm", feats, booster, horizon_days=split.horizon_days,
                     train_cutoffs=[str(t) for t in split.train_cutoffs])
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
    hyper = {**{f"lgbm.{k}": v for k, v in lgbm_params("binary").items()},
             **{f"baseline.logistic.{k}": v for k, v in logistic_hyperparameters(base_pipe).items()},
             "baseline.max_rows": MAX_BASELINE_ROWS}
    return {"model": model, "y_true": y_ho, "y_pred": p_model, "baseline_pred": p_base, "metrics": m_model,
            "baseline_metrics": m_base, "fairness": fair, "drift": drift_rep, "importance": importance,
            "hyperparameters": hyper, "plots": plot_paths + [imp_path, out / "calibration.csv"]}


def _bgnbd_holdout(warehouse: Path, split: Split) -> tuple[dict, clv.ClvParams | None]:
    """BG/NBD + GG fitted on the purchase history up to the holdout cutoff (the ``fct_clv_snapshots`` rows of that
    month end), scored on the holdout persons."""
    with connect_read_only(warehouse) as con:
        summary = features.clv_snapshot(con, split.holdout_cutoff)
    try:
        prm = clv.fit_clv(summary, time_unit_days=CLV_TIME_UNIT_DAYS)
    except UlmError as exc:
        log.warning("BG/NBD comparison skipped: %s", exc)
        return {}, None
    pred = clv.predict_ltv(prm, summary, split.horizon_days).set_index("person_id")["predicted_ltv"]
    y_pred = split.holdout["person_id"].map(pred).fillna(0.0).to_numpy()
    return M.ltv_metrics(split.holdout[split.label].to_numpy(float), y_pred), prm


def _ltv_hyperparameters() -> dict:
    return {**{f"lgbm.{k}": v for k, v in lgbm_params("tweedie").items()},
            "baseline.formula": "AOV x purchases per day (365 days or tenure) x horizon",
            "bgnbd.time_unit_days": CLV_TIME_UNIT_DAYS, "bgnbd.priors": "HalfFlat (MAP = maximum likelihood)",
            "bgnbd.fit": "map", "gamma_gamma.priors": "pymc-marketing defaults", "gamma_gamma.fit": "map"}


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
            "importance": importance, "hyperparameters": _ltv_hyperparameters(), "plots": plot_paths}


def _prepared(frame: pd.DataFrame, feats: list[str]) -> pd.DataFrame:
    from ulm.ml.models import prepare

    return prepare(frame.head(5000), feats)


def _log_results(res: dict, out: Path) -> None:
    """Metrics, hyperparameters, reports and plots of one task into the active run."""
    mlflow.log_params(res["hyperparameters"])
    _log_metrics("", res["metrics"])
    _log_metrics("baseline_", res["baseline_metrics"])
    _log_metrics("bgnbd_", res.get("bgnbd_metrics", {}))
    res["fairness"].report.to_csv(out / "fairness_report.csv", index=False)
    res["drift"].to_csv(out / "drift_report.csv", index=False)
    res["importance"].to_csv(out / "feature_importance.csv", index=False)
    _log_metrics("", {"fairness_disparate_impact": res["fairness"].disparate_impact})
    for path in [*res["plots"], out / "fairness_report.csv", out / "drift_report.csv",
                 out / "feature_importance.csv"]:
        mlflow.log_artifact(str(path))


def _run_task(task: str, split: Split, feats: list[str], warehouse: Path, as_of: date) -> dict:
    """Fit, log, register, decide for one task inside its own MLflow run ``<model>-<as_of>-<run id prefix>``."""
    start = time.perf_counter()
    model_name = tracking.MODEL_NAMES[task]
    with tempfile.TemporaryDirectory(prefix=f"ulm-{task}-") as tmp, \
            mlflow.start_run(experiment_id=tracking.experiment_id(task), run_name=f"{model_name}-{as_of}") as run:
        run_id, out = run.info.run_id, Path(tmp)
        name = tracking.run_name(model_name, as_of, run_id)
        MlflowClient().update_run(run_id, name=name)
        digests = _digests(split, feats)
        mlflow.log_params({**_run_params(task, split, feats, as_of, digests), **_gate_params(task)})
        mlflow.set_tags({"ulm.task": task, "ulm.as_of": str(as_of), "data_digest": digests["data_digest"]})
        res = _train_churn(split, feats, out) if task == "churn" else _train_ltv(split, feats, out, warehouse)
        _log_results(res, out)
        model_uri = _log_model(split, feats, res["model"], out)
        decision = registry.register_and_decide(
            task=task, run_id=run_id, model_uri=model_uri, holdout_x=split.holdout[feats],
            y_true=res["y_true"], y_pred=res["y_pred"], baseline_pred=res["baseline_pred"],
            fairness=res["fairness"], horizon_days=split.horizon_days, holdout_cutoff=split.holdout_cutoff)
        if decision.compared_against != "baseline":
            _log_metrics("champion_", {"roc_auc" if task == "churn" else "mae": decision.reference_score})
        mlflow.set_tag("mlflow.note.content", _description(split, as_of, decision, digests))
        mlflow.log_metric("train_seconds", time.perf_counter() - start)
    res.update(run_id=run_id, run_name=name, decision=decision, seconds=time.perf_counter() - start)
    return res


# ----------------------------------------------------------------------------------------------- entry


@quiet
def train(as_of: date, warehouse: Path, tasks: tuple[str, ...] = ("churn", "ltv"),
          churn_horizon: int | None = None) -> dict[str, dict]:
    """Train, log, register and decide promotion for each task; returns per-task results (``run_name``,
    ``decision``, metrics, ...). One INFO line per promotion decision; third-party output goes to the debug log."""
    tracking.configure()
    features.build_snapshots(warehouse, as_of)
    snaps = read_snapshots(warehouse)
    feats = features.feature_columns(snaps)
    results: dict[str, dict] = {}
    for task in tasks:
        split = churn_split(snaps, churn_horizon) if task == "churn" else ltv_split(snaps)
        results[task] = _run_task(task, split, feats, warehouse, as_of)
        log.debug("%s: run %s in %.1fs", task, results[task]["run_name"], results[task]["seconds"])
    write_reports(warehouse, as_of, results)
    return results
