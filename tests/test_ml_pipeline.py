"""Snapshots (point-in-time, labels) and the train -> register -> promote -> score path on a real DuckDB file.

The published interface tables ML reads (``ulm.ml.features.INTERFACE``: ``marts.dim_persons``,
``fct_person_activity_daily``, ``fct_orders``, ``fct_invites``, ``fct_clv_snapshots``) come from
``ulm.ml.synthetic.write_interface`` (seeded); the lead can point the e2e test at the dbt-built warehouse once
``ulm generate/ingest/build`` are stable.
"""
from __future__ import annotations

import json
import re
import shutil
from datetime import date

import mlflow
import numpy as np
import pandas as pd
import pytest

from ulm.core.errors import UlmError
from ulm.ml import features, score, synthetic, train
from ulm.ml.registry import CHAMPION
from ulm.warehouse import connect, connect_read_only

AS_OF = date(2025, 12, 31)
CUTOFF = date(2025, 6, 30)  # a month end: fct_clv_snapshots holds month ends and the as-of day


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("wh") / "wh.duckdb"
    synthetic.write_interface(path, persons=3000, days=540, end=AS_OF, seed=7)
    return path


def _features(path, cutoff, as_of=None) -> pd.DataFrame:
    with connect_read_only(path) as con:
        df = features.snapshot(con, cutoff, as_of)
    return df.sort_values("person_id").reset_index(drop=True)


def test_no_leakage_after_cutoff(warehouse, tmp_path):
    full = _features(warehouse, CUTOFF, AS_OF)
    cut = tmp_path / "cut.duckdb"
    shutil.copy(warehouse, cut)
    with connect(cut) as con:
        n_deleted = con.execute("delete from marts.fct_person_activity_daily where activity_date > ?",
                                [CUTOFF]).fetchone()[0]
        con.execute("delete from marts.fct_orders where order_date > ?", [CUTOFF])
        con.execute("delete from marts.fct_invites where sent_date > ?", [CUTOFF])
        con.execute("update marts.fct_invites set invitee_person_id = null, accepted_date = null, is_accepted = false "
                    "where accepted_date > ?", [CUTOFF])
        con.execute("delete from marts.dim_persons where registered_date > ?", [CUTOFF])
        con.execute("delete from marts.fct_clv_snapshots where snapshot_date > ?", [CUTOFF])
    assert n_deleted > 1000
    truncated = _features(cut, CUTOFF, AS_OF)
    cols = features.feature_columns(full)
    assert len(full) > 500 and len(cols) > 40
    pd.testing.assert_frame_equal(full[["person_id", *cols]], truncated[["person_id", *cols]])
    assert full["churn_30d"].notna().all() and truncated["churn_30d"].eq(1).all()  # labels do look ahead


def test_population_and_labels(warehouse):
    snap = _features(warehouse, CUTOFF, AS_OF)
    with connect_read_only(warehouse) as con:
        act = con.execute("select person_id, activity_date from marts.fct_person_activity_daily").df()
        persons = con.execute("select person_id, consent_analytics from marts.dim_persons").df()
    act["activity_date"] = pd.to_datetime(act["activity_date"])
    c = pd.Timestamp(CUTOFF)
    recent = set(act.loc[(act["activity_date"] > c - pd.Timedelta(days=90)) & (act["activity_date"] <= c), "person_id"])
    consent = set(persons.loc[persons["consent_analytics"], "person_id"])
    assert set(snap["person_id"]) == recent & consent
    future = act[(act["activity_date"] > c) & (act["activity_date"] <= c + pd.Timedelta(days=30))]
    expected = (~snap["person_id"].isin(set(future["person_id"]))).astype(int)
    np.testing.assert_array_equal(snap["churn_30d"].to_numpy(int), expected.to_numpy())
    late = _features(warehouse, date(2025, 11, 30), date(2025, 12, 20))  # labels observed up to Dec 20
    assert late["churn_30d"].isna().all() and late["churn_14d"].notna().all()  # 20 days observed, 30 not yet
    assert late["ltv_365d"].isna().all()


def test_clv_features_are_the_clv_snapshot_at_the_cutoff(warehouse):
    snap = _features(warehouse, CUTOFF).set_index("person_id")
    with connect_read_only(warehouse) as con:
        clv = features.clv_snapshot(con, CUTOFF).set_index("person_id")
    buyers = snap[snap["clv_frequency"].notna()]
    assert len(buyers) > 100 and set(buyers.index) <= set(clv.index)
    for col in features.CLV_COLUMNS:
        np.testing.assert_allclose(buyers[f"clv_{col}"].astype(float), clv.loc[buyers.index, col].astype(float))
    assert snap.loc[snap["clv_frequency"].isna(), "purchase_days_total"].eq(0).all()


def test_cutoff_without_clv_snapshot_is_refused(warehouse):
    with connect_read_only(warehouse) as con, pytest.raises(UlmError, match="fct_clv_snapshots.*2025-12-15"):
        features.snapshot(con, date(2025, 12, 15))


def test_unscored_reasons_partition_dim_persons(warehouse):
    """Every person of dim_persons is either in the scoring population of the day or has exactly one reason."""
    with connect_read_only(warehouse) as con:
        reasons = features.unscored_reasons(con, CUTOFF).set_index("reason")["persons"]
        population = features.snapshot(con, CUTOFF)
        persons = con.execute("select person_id, registered_date, consent_analytics from marts.dim_persons").df()
        act = con.execute("select distinct person_id from marts.fct_person_activity_daily where is_active_day "
                          "and activity_date > ? - 90 and activity_date <= ?", [CUTOFF, CUTOFF]).df()
    no_consent = ~persons["consent_analytics"]
    later = ~no_consent & (pd.to_datetime(persons["registered_date"]) > pd.Timestamp(CUTOFF))
    inactive = ~no_consent & ~later & ~persons["person_id"].isin(act["person_id"])
    assert reasons.get("no_analytics_consent") == no_consent.sum() > 0
    assert reasons.get("registered_after_scoring") == later.sum() > 0
    assert reasons.get("inactive") == inactive.sum() > 0
    named = reasons[reasons.index.notna()]
    assert reasons[reasons.index.isna()].sum() == len(population) == len(persons) - named.sum()
    assert set(named.index) <= set(features.UNSCORED_REASONS)


def _run(client, results, task):
    return client.get_run(results[task]["run_id"])


@pytest.mark.slow
def test_train_register_promote_score(warehouse, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    caplog.set_level("INFO", logger="ulm")
    results = train.train(AS_OF, warehouse)
    client = mlflow.MlflowClient()
    for task, name in (("churn", "ulm_churn"), ("ltv", "ulm_ltv")):
        d = results[task]["decision"]
        assert d.promoted and d.compared_against == "baseline", d.reason
        assert str(client.get_model_version_by_alias(name, CHAMPION).version) == d.version
        run = _run(client, results, task)
        assert run.data.tags["promotion_decision"] == "promoted"
        assert {"baseline_" + ("roc_auc" if task == "churn" else "mae")} <= set(run.data.metrics)
        assert len(run.inputs.dataset_inputs) == 2  # training + holdout snapshot digests
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"features.json", "fairness_report.csv", "drift_report.csv", "feature_importance.csv"} <= arts
        # comparable runs: name, as-of, cutoffs, population, digest, hyperparameters, description
        assert re.fullmatch(rf"{name}-2025-12-31-{run.info.run_id[:8]}", run.info.run_name)
        p = run.data.params
        assert p["as_of"] == "2025-12-31" and p["holdout_cutoff"] == str(results[task]["decision"].holdout_cutoff)
        assert p["train_cutoffs"].split(",")[-1] < p["holdout_cutoff"] and "analytics consent" in p["population"]
        assert run.data.tags["data_digest"] == p["data_digest"] and len(p["train_digest"]) == 16
        assert p["lgbm.objective"] == ("binary" if task == "churn" else "tweedie") and p["lgbm.num_boost_round"]
        note = run.data.tags["mlflow.note.content"]
        assert note.startswith(f"**{name} v{d.version}: promoted**") and "holdout" in note
        # artifacts under <data dir>/mlflow/artifacts, the experiment's default view lists metric columns
        assert run.info.artifact_uri.startswith((tmp_path / "mlflow" / "artifacts").as_uri())
        exp_tags = client.get_experiment(run.info.experiment_id).tags
        view = json.loads(json.loads(exp_tags["mlflow.sharedViewState.ulm-default"])["state"])
        assert "metrics.`baseline_" + ("roc_auc`" if task == "churn" else "mae`") in view["selectedColumns"]
    assert "lgbm.learning_rate" in _run(client, results, "churn").data.params
    assert "baseline.logistic.C" in _run(client, results, "churn").data.params
    assert results["ltv"]["bgnbd_metrics"]["mae"] > 0  # BG/NBD + Gamma-Gamma comparison ran point-in-time
    assert not (tmp_path / "cwd" / "mlruns").exists()  # nothing written to the working directory
    decisions = [r.getMessage() for r in caplog.records if r.name == "ulm.ml.registry"]
    assert len(decisions) == 2 and all(" promoted vs baseline: " in m for m in decisions), decisions

    first = score.score(AS_OF, warehouse)
    again = score.score(AS_OF, warehouse)  # same day: rows replaced, not duplicated
    with connect_read_only(warehouse) as con:
        s = con.execute("select * from ml.scores").df()
        fair = con.execute("select count(*) from ml.fairness_report").fetchone()[0]
        drift_ctx = {r[0] for r in con.execute("select distinct context from ml.drift_report").fetchall()}
        n_pop = len(features.snapshot(con, AS_OF))
        n_persons = con.execute("select count(*) from marts.dim_persons").fetchone()[0]
    assert len(s) == first["persons"] == again["persons"] == n_pop and s["person_id"].is_unique
    assert first["persons_total"] == n_persons == n_pop + sum(first["not_scored"].values())
    assert first["not_scored"]["inactive"] > 0 and first["not_scored"]["no_analytics_consent"] > 0
    assert s["churn_probability"].between(0, 1).all() and (s["predicted_ltv_365"] >= 0).all()
    assert set(s["churn_model_version"]) == {results["churn"]["decision"].version}
    assert fair > 0 and drift_ctx == {"train", "score"}

    # training days out of order (a backfill): the earlier day's holdout is inside the champion's training data
    early = train.train(date(2025, 9, 30), warehouse, tasks=("churn",))["churn"]
    d, champ = early["decision"], results["churn"]["decision"]
    assert not d.promoted and d.compared_against == f"champion v{champ.version}", d.reason
    assert "no holdout is unseen by both" in d.reason and d.holdout_cutoff < champ.holdout_cutoff
    assert str(client.get_model_version_by_alias("ulm_churn", CHAMPION).version) == champ.version
    assert early["run_name"].startswith("ulm_churn-2025-09-30-")
