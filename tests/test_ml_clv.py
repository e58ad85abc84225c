"""CDNOW check (docs/METRICS.md#machine-learning): BG/NBD + Gamma-Gamma on the CDNOW 1/10 sample reproduce the
published estimates.

The summary comes through the platform path: ``ulm ingest --cdnow`` -> dbt -> ``marts.mart_clv_summary``
(session fixture ``cdnow_sample_warehouse``); a pandas recomputation straight from the file must agree with it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ulm.core.errors import UlmError
from ulm.core.settings import cdnow_dir
from ulm.ml import clv

CDNOW = cdnow_dir() / "CDNOW_sample.txt"
CAL_END = pd.Timestamp("1997-09-30")
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


def cdnow_summary(path: Path = CDNOW, end: pd.Timestamp = CAL_END) -> pd.DataFrame:
    """mart_clv_summary columns from raw CDNOW: same-day purchases merged, days up to ``end``."""
    tx = pd.read_csv(path, sep=r"\s+", header=None, names=["mid", "person_id", "day", "cds", "amount"])
    tx["day"] = pd.to_datetime(tx["day"].astype(str), format="%Y%m%d")
    days = tx[tx["day"] <= end].groupby(["person_id", "day"], as_index=False)["amount"].sum()
    days["first"] = days.groupby("person_id")["day"].transform("min")
    g = days.groupby("person_id")
    out = pd.DataFrame({
        "frequency": g["day"].nunique() - 1,
        "recency_days": (g["day"].max() - g["first"].min()).dt.days,
        "t_days": (end - g["first"].min()).dt.days,
        "monetary_value": days[days["day"] > days["first"]].groupby("person_id")["amount"].mean(),
    }).reset_index()
    return out.fillna({"monetary_value": 0.0})


@pytest.fixture(scope="module")
def summary(cdnow_sample_warehouse) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect(str(cdnow_sample_warehouse), read_only=True)
    try:
        return con.execute("select person_id, frequency, recency_days, t_days, monetary_value "
                           "from marts.mart_clv_summary order by person_id").df()
    finally:
        con.close()


def test_platform_summary_equals_file_recomputation(summary):
    ref = cdnow_summary()
    assert len(ref) == len(summary)
    for col in ("frequency", "recency_days", "t_days"):
        assert sorted(ref[col].astype(int)) == sorted(summary[col].astype(int)), col
    np.testing.assert_allclose(sorted(ref["monetary_value"].astype(float)),
                               sorted(summary["monetary_value"].astype(float)), rtol=1e-9, atol=0.006)


@pytest.fixture(scope="module")
def fitted(summary) -> clv.ClvParams:
    return clv.fit_clv(summary, time_unit_days=7)


def test_cdnow_summary_shape(summary):
    assert len(summary) == 2357 and int((summary["frequency"] > 0).sum()) == 946


def test_cdnow_published_parameters(fitted):
    got = fitted.as_dict()
    for name, ref in {**PUBLISHED_BGNBD, **PUBLISHED_GG}.items():
        assert got[name] == pytest.approx(ref, rel=0.02), name
    assert fitted.n_repeat_buyers == 946


def test_numpy_predictions_match_pymc_marketing(fitted, summary):
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel

    frame = clv.to_model_frame(summary, 7)
    bg = BetaGeoModel(model_config={k: Prior("HalfFlat") for k in ("r", "alpha", "a", "b")})
    bg.fit(frame[["customer_id", "frequency", "recency", "T"]], method="map", progressbar=False)
    ref = bg.expected_purchases(frame, future_t=52).values.ravel()
    ours = clv.expected_purchases(fitted, summary, horizon_days=52 * 7)
    np.testing.assert_allclose(ours, ref, rtol=1e-3)
    alive = bg.expected_probability_alive(frame).values.ravel()
    np.testing.assert_allclose(clv.probability_alive(fitted, summary), alive, rtol=1e-3)
    pred = clv.predict_ltv(fitted, summary, 365)
    assert (pred["predicted_ltv"] >= 0).all()
    # a repeat buyer's expected spend shrinks towards the population mean p*v/(q-1)
    pop = fitted.p * fitted.v / (fitted.q - 1)
    one = summary.iloc[[int(np.argmax(summary["monetary_value"]))]]
    assert pop < clv.expected_spend(fitted, one)[0] < one["monetary_value"].iloc[0]


def test_bad_summary_names_column_and_rule(summary):
    with pytest.raises(UlmError, match="t_days >= recency_days"):
        clv.fit_clv(summary.assign(t_days=0))
    with pytest.raises(UlmError, match="column monetary_value missing"):
        clv.to_model_frame(summary.drop(columns="monetary_value"))
