"""Daily batch scoring (docs/METRICS.md#machine-learning): champion models -> ``ml.scores``, drift of the scoring
population.

``score(as_of, warehouse)`` loads ``models:/ulm_churn@champion`` and ``models:/ulm_ltv@champion``, computes
point-in-time features for the scoring day from the published marts (same SQL and population as the training
snapshots; ``as_of`` must be a ``snapshot_date`` of ``marts.fct_clv_snapshots``: the marts' as-of day), and
replaces the ``ml.scores`` rows of that ``score_date``. The result counts the persons of ``dim_persons`` left out,
by reason (``ulm.ml.features.unscored_reasons``: no analytics consent, registered after the day, not active in the
population window). ``predicted_ltv_365`` is the LTV model's prediction scaled linearly to 365 days when the model
was trained on a shorter horizon (short history).
Drift: PSI of the score and the model's top features, training snapshots vs scoring population.
"""
from __future__ import annotations

import importlib.metadata
import logging
import time
from datetime import date
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.ml import drift, features, tracking
from ulm.ml.metrics import churn_metrics
from ulm.ml.quiet import quiet
from ulm.ml.registry import CHAMPION
from ulm.ml.reports import write_reports
from ulm.warehouse import PUBLISHED, connect, connect_read_only, ensure_ml_schema, table_exists, transaction

log = logging.getLogger("ulm.ml.score")

DRIFT_REFERENCE_ROWS = 50_000


# the packages a champion's pickle depends on: checked against the model's requirements.txt on load
CHECKED_PACKAGES = ("lightgbm", "scikit-learn", "numpy", "pandas", "mlflow")


def requirement_mismatches(requirements: str, installed=importlib.metadata.version) -> list[str]:
    """``name==pinned (installed X)`` for each of ``CHECKED_PACKAGES`` pinned in a model's requirements.txt at
    another version than installed here (a model trained in another environment may unpickle or predict
    differently)."""
    found = []
    for line in requirements.splitlines():
        name, sep, pinned = line.split(";")[0].strip().partition("==")
        key = name.split("[")[0].strip().lower().replace("_", "-")
        if not sep or key not in CHECKED_PACKAGES:
            continue
        try:
            have = installed(key)
        except importlib.metadata.PackageNotFoundError:
            have = "none"
        if have != pinned.strip():
            found.append(f"{key}=={pinned.strip()} (installed {have})")
    return found


def load_champion(task: str) -> tuple[mlflow.pyfunc.PyFuncModel, str]:
    """The ``@champion`` of ``task`` and its version. MLflow's own dependency check on load (every requirement
    against every installed distribution, ~1 s a model) is replaced by a check of the few packages the pickle
    depends on (``requirement_mismatches``), logged as a warning."""
    name = tracking.MODEL_NAMES[task]
    client = mlflow.MlflowClient()
    try:
        version = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        raise UlmError(f"model registry: {name} has no @champion (rule: run `ulm train` first)") from exc
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    requirements = local / "requirements.txt"
    if requirements.exists():
        mismatches = requirement_mismatches(requirements.read_text())
        if mismatches:
            log.warning("%s v%s was trained with other package versions: %s (retrain with `ulm train` to match)",
                        name, version, ", ".join(mismatches))
    return mlflow.pyfunc.load_model(str(local), suppress_warnings=True), version


def _reference(con: duckdb.DuckDBPyConnection, cutoffs: list[str]) -> pd.DataFrame:
    """Training snapshot rows of the champion (sampled) for drift."""
    if not cutoffs:
        return pd.DataFrame()
    # models trained on another warehouse: score, but there is no training population to compare
    if not table_exists(con, "ml", "feature_snapshots"):
        log.warning("ml.feature_snapshots is missing in this warehouse: drift of the scores is not reported")
        return pd.DataFrame()
    placeholders = ", ".join("?" for _ in cutoffs)
    df = con.execute(f"select * from ml.feature_snapshots where snapshot_date in ({placeholders}) "
                     f"using sample reservoir({DRIFT_REFERENCE_ROWS} rows) repeatable (7)",
                     [date.fromisoformat(c) for c in cutoffs]).df()
    return features.normalize_types(df)


def _drift(model, frame: pd.DataFrame, pred: np.ndarray, reference: pd.DataFrame) -> pd.DataFrame:
    inner = model.unwrap_python_model()
    if reference.empty:
        return pd.DataFrame()
    ref_pred = inner.predict_frame(reference)
    rep = drift.drift_report(pd.DataFrame({"score": ref_pred}), pd.DataFrame({"score": pred}), ["score"])
    top = [c for c in getattr(inner, "top_features", []) if c in frame.columns and c in reference.columns]
    return pd.concat([rep, drift.drift_report(reference, frame, top)], ignore_index=True)


def evaluate_against_truth(warehouse: Path, as_of: date, truth_dir: Path, schema: str = PUBLISHED) -> dict[str, float]:
    """Generated data only: churn scores vs the generator's latent churn (dead on or before ``as_of``).

    Maps each person to the true person of its smallest ``user_id`` (``marts.dim_accounts``: user_id -> person_id),
    reads ``<truth_dir>/accounts.parquet`` (user_id, true_person_id) and ``persons.parquet`` (churn_date).
    """
    accounts, persons = Path(truth_dir) / "accounts.parquet", Path(truth_dir) / "persons.parquet"
    if not (accounts.exists() and persons.exists()):
        return {}
    with connect_read_only(warehouse) as con:
        df = con.execute(f"""
            with m as (select i.person_id, arg_min(a.true_person_id, i.user_id) as true_person_id
                       from {schema}.dim_accounts as i join read_parquet(?) as a using (user_id)
                       group by i.person_id)
            select s.churn_probability, coalesce(t.churn_date <= s.score_date, false) as truly_churned
            from ml.scores as s join m using (person_id) join read_parquet(?) as t using (true_person_id)
            where s.score_date = ?""", [str(accounts), str(persons), as_of]).df()
    if df.empty:
        return {}
    m = churn_metrics(df["truly_churned"].astype(int), df["churn_probability"])
    return {f"truth_{k}": v for k, v in m.items()}


def coverage(unscored: pd.DataFrame, scored: int) -> dict:
    """Persons of ``dim_persons``, how many were scored, and how many were not, by reason (docs/ML.md#score-coverage)."""
    reasons = {r: int(n) for r, n in zip(unscored["reason"], unscored["persons"]) if pd.notna(r) and n}
    return {"persons_total": scored + sum(reasons.values()), "persons": scored,
            "not_scored": {r: reasons.get(r, 0) for r in features.UNSCORED_REASONS}}


@quiet
def score(as_of: date, warehouse: Path, truth_dir: Path | None = None, target: str = "duckdb") -> dict:
    """Score the population as of ``as_of`` with both champions; returns counts (scored, not scored by reason),
    versions and timings. On ``target="postgres"`` the features are read from the Postgres published marts and
    ``ml.scores`` is written back there too (where the dbt models read it), after the DuckDB warehouse's; the same on
    ``"spark"`` (the published Spark database; ``ml`` re-synced to Spark)."""
    start = time.perf_counter()
    tracking.configure()
    churn_model, churn_version = load_champion("churn")
    ltv_model, ltv_version = load_champion("ltv")
    with connect_read_only(warehouse) as con:
        with features.published_marts(con, target, warehouse) as marts:
            frame = features.normalize_types(features.snapshot(marts, as_of))
            unscored = features.unscored_reasons(marts, as_of)
        churn_cutoffs = churn_model.unwrap_python_model().train_cutoffs
        ltv_cutoffs = ltv_model.unwrap_python_model().train_cutoffs
        ref_churn = _reference(con, churn_cutoffs)
        # both champions of one `ulm train` share their cutoffs: one sample serves both
        ref_ltv = ref_churn if sorted(ltv_cutoffs) == sorted(churn_cutoffs) else _reference(con, ltv_cutoffs)
    t_features = time.perf_counter() - start
    # the unwrapped model skips MLflow's per-call schema check (the frame comes from the same snapshot SQL)
    churn = churn_model.unwrap_python_model().predict_frame(frame)
    ltv_inner = ltv_model.unwrap_python_model()
    scale = float(param("ltv_horizon_days")) / float(ltv_inner.horizon_days)
    ltv = np.clip(ltv_inner.predict_frame(frame), 0, None) * scale
    out = pd.DataFrame({"person_id": frame["person_id"], "score_date": as_of, "churn_probability": churn,
                        "predicted_ltv_365": np.round(ltv, 2), "churn_model_version": churn_version,
                        "ltv_model_version": ltv_version})
    t_predict = time.perf_counter() - start - t_features
    with connect(warehouse) as con:
        ensure_ml_schema(con)
        con.register("scores_df", out)
        with transaction(con):
            con.execute("delete from ml.scores where score_date = ?", [as_of])
            con.execute("insert into ml.scores by name select * from scores_df")
        con.unregister("scores_df")
        if target == "postgres":  # Postgres ml.scores := DuckDB's, in one Postgres transaction
            from ulm.warehouse import postgres

            copied = postgres.copy_from_duckdb(con, postgres.PgConfig.from_env(), tables=[("ml", "scores")])
            log.info("ml.scores written to PostgreSQL: %s rows", f"{copied['ml.scores']:,}")
    if target == "spark":  # Spark ml.* := DuckDB's (Parquet copies re-registered), where the dbt models read them
        from ulm.privacy.keys import require_pii_key
        from ulm.warehouse import spark

        copied = spark.sync_raw(warehouse, require_pii_key(), schemas=("ml",))
        log.info("ml.scores written to Spark: %s rows", f"{copied.get('ml.scores', 0):,}")
    drifts = {"churn": {"drift": _drift(churn_model, frame, churn, ref_churn), "run_id": None},
              "ltv": {"drift": _drift(ltv_model, frame, ltv / scale, ref_ltv), "run_id": None}}
    drifts = {k: v for k, v in drifts.items() if not v["drift"].empty}
    if drifts:
        write_reports(warehouse, as_of, drifts, context="score")
    result = {**coverage(unscored, len(out)), "score_date": as_of, "churn_model_version": churn_version,
              "ltv_model_version": ltv_version, "features_seconds": round(t_features, 2),
              "predict_seconds": round(t_predict, 2), "seconds": round(time.perf_counter() - start, 2)}
    if truth_dir is not None:
        result.update(evaluate_against_truth(warehouse, as_of, truth_dir))
    missing = ", ".join(f"{n:,} {r.replace('_', ' ')}" for r, n in result["not_scored"].items() if n) or "none"
    log.info("scored %s of %s persons on %s (churn v%s, LTV v%s); not scored: %s", f"{len(out):,}",
             f"{result['persons_total']:,}", as_of, churn_version, ltv_version, missing)
    return result
