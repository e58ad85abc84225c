"""Probabilistic CLV (docs/METRICS.md#machine-learning): BG/NBD (purchase count) + Gamma-Gamma (spend) fitted
by MAP with pymc-marketing.

Input is exactly the columns of ``marts.mart_clv_summary`` (one row per person with a purchase, as of ``d``):

=================  ==============================================================
``person_id``      person key
``frequency``      repeat purchase days (distinct purchase days - 1)
``recency_days``   days from the first to the last purchase day
``t_days``         days from the first purchase day to the as-of day
``monetary_value`` mean net revenue of the repeat purchase days (first excluded)
=================  ==============================================================

Days are divided by ``time_unit_days`` (7 = weeks, the CDNOW convention). Flat priors make the MAP
estimate the maximum-likelihood estimate, which is what the published CDNOW figures are.

Fitting uses pymc-marketing; prediction uses the closed forms of the same papers in numpy
(Fader, Hardie & Lee 2005 eq. 10; Fader & Hardie 2013 eq. 5) on the seven fitted numbers, so a scoring
process needs no PyMC model object and 1M persons take well under a second.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import hyp2f1

from ulm.core.errors import UlmError

log = logging.getLogger("ulm.ml.clv")

SUMMARY_COLUMNS = ("person_id", "frequency", "recency_days", "t_days", "monetary_value")


@dataclass(frozen=True)
class ClvParams:
    """Fitted BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, v) parameters; time in ``time_unit_days``."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    time_unit_days: float
    n_persons: int
    n_repeat_buyers: int
    fit_seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def validate_summary(summary: pd.DataFrame, source: str = "mart_clv_summary") -> None:
    """Raise UlmError naming the column and rule when the summary breaks the CLV input contract."""
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise UlmError(f"{source}: column {missing[0]} missing (rule: CLV summary needs {', '.join(SUMMARY_COLUMNS)})")
    rules = {
        "frequency": (summary["frequency"] < 0, "frequency >= 0"),
        "recency_days": (summary["recency_days"] < 0, "recency_days >= 0"),
        "t_days": (summary["t_days"] < summary["recency_days"], "t_days >= recency_days"),
    }
    for col, (bad, rule) in rules.items():
        if bool(bad.any()):
            raise UlmError(f"{source}: column {col} breaks rule {rule} in {int(bad.sum())} rows")
    if summary["person_id"].duplicated().any():
        raise UlmError(f"{source}: column person_id breaks rule unique")


def to_model_frame(summary: pd.DataFrame, time_unit_days: float = 7) -> pd.DataFrame:
    """Mart columns -> pymc-marketing columns (customer_id, frequency, recency, T, monetary_value)."""
    validate_summary(summary)
    return pd.DataFrame(
        {
            "customer_id": np.arange(len(summary)),  # positional id: pymc coords need no strings
            "frequency": summary["frequency"].to_numpy(dtype="float64"),
            "recency": summary["recency_days"].to_numpy(dtype="float64") / time_unit_days,
            "T": summary["t_days"].to_numpy(dtype="float64") / time_unit_days,
            "monetary_value": pd.to_numeric(summary["monetary_value"]).fillna(0).to_numpy(dtype="float64"),
        }
    )


def _map_point(model, data: pd.DataFrame, names: tuple[str, ...]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data, method="map", progressbar=False)
    return {k: float(np.asarray(model.fit_result[k]).ravel()[0]) for k in names}


def repeat_buyers(frame: pd.DataFrame) -> pd.DataFrame:
    """Gamma-Gamma input: repeat buyers with positive spend (rows of ``to_model_frame``)."""
    return frame[(frame["frequency"] > 0) & (frame["monetary_value"] > 0)]


def fit_bgnbd(frame: pd.DataFrame) -> dict[str, float]:
    """BG/NBD MAP fit (flat priors) on ``to_model_frame`` rows -> r, alpha, a, b."""
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel

    flat = {k: Prior("HalfFlat") for k in ("r", "alpha", "a", "b")}
    return _map_point(BetaGeoModel(model_config=flat), frame[["customer_id", "frequency", "recency", "T"]],
                      ("r", "alpha", "a", "b"))


def fit_gamma_gamma(repeat: pd.DataFrame) -> dict[str, float]:
    """Gamma-Gamma MAP fit on repeat buyers (``repeat_buyers``) -> p, q, v."""
    from pymc_marketing.clv import GammaGammaModel

    return _map_point(GammaGammaModel(), repeat[["customer_id", "frequency", "monetary_value"]], ("p", "q", "v"))


def fit_clv(summary: pd.DataFrame, time_unit_days: float = 7) -> ClvParams:
    """Fit BG/NBD on all persons and Gamma-Gamma on repeat buyers with positive spend (MAP, flat priors)."""
    frame = to_model_frame(summary, time_unit_days)
    repeat = repeat_buyers(frame)
    if len(frame) < 10 or len(repeat) < 10:
        raise UlmError(
            f"mart_clv_summary: column frequency breaks rule 'at least 10 persons and 10 repeat buyers' "
            f"({len(frame)} persons, {len(repeat)} repeat buyers)"
        )
    start = time.perf_counter()
    bg = fit_bgnbd(frame)
    gg = fit_gamma_gamma(repeat)
    seconds = time.perf_counter() - start
    log.debug("CLV fit on %d persons (%d repeat buyers) in %.1fs", len(frame), len(repeat), seconds)
    return ClvParams(**bg, **gg, time_unit_days=float(time_unit_days), n_persons=len(frame),
                     n_repeat_buyers=len(repeat), fit_seconds=round(seconds, 3))


def _arrays(summary: pd.DataFrame, unit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = summary["frequency"].to_numpy(dtype="float64")
    t_x = summary["recency_days"].to_numpy(dtype="float64") / unit
    big_t = summary["t_days"].to_numpy(dtype="float64") / unit
    return x, t_x, big_t


def _dropout_odds(prm: ClvParams, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) for repeat buyers, 0 otherwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = prm.a / (prm.b + x - 1) * ((prm.alpha + big_t) / (prm.alpha + t_x)) ** (prm.r + x)
    return np.where(x > 0, odds, 0.0)


def probability_alive(prm: ClvParams, summary: pd.DataFrame) -> np.ndarray:
    """P(still active) under BG/NBD."""
    x, t_x, big_t = _arrays(summary, prm.time_unit_days)
    return 1.0 / (1.0 + _dropout_odds(prm, x, t_x, big_t))


def expected_purchases(prm: ClvParams, summary: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """Expected repeat purchase days in (d, d + horizon_days] (BG/NBD conditional expectation, eq. 10)."""
    x, t_x, big_t = _arrays(summary, prm.time_unit_days)
    t = horizon_days / prm.time_unit_days
    a, b, r, alpha = prm.a, prm.b, prm.r, prm.alpha
    head = (a + b + x - 1) / (a - 1)
    tail = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1,
                                                                          t / (alpha + big_t + t))
    return np.clip(head * tail / (1.0 + _dropout_odds(prm, x, t_x, big_t)), 0.0, None)


def expected_spend(prm: ClvParams, summary: pd.DataFrame) -> np.ndarray:
    """Gamma-Gamma posterior mean spend per purchase day (population mean for persons without repeat spend)."""
    x = summary["frequency"].to_numpy(dtype="float64")
    m = pd.to_numeric(summary["monetary_value"]).fillna(0).to_numpy(dtype="float64")
    population_mean = prm.v * prm.p / (prm.q - 1)
    weight = np.where(x > 0, prm.p * x / (prm.p * x + prm.q - 1), 0.0)
    return (1 - weight) * population_mean + weight * m


def predict_ltv(prm: ClvParams, summary: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """Per person: p_alive, expected purchases and predicted net revenue over the horizon (undiscounted)."""
    purchases = expected_purchases(prm, summary, horizon_days)
    spend = expected_spend(prm, summary)
    return pd.DataFrame(
        {
            "person_id": summary["person_id"].to_numpy(),
            "p_alive": probability_alive(prm, summary),
            "expected_purchases": purchases,
            "expected_spend": spend,
            "predicted_ltv": purchases * spend,
        }
    )


def unconditional_expected_purchases(prm: ClvParams, t_units) -> np.ndarray:
    """E[X(t)]: expected repeat purchase days of a customer in the ``t_units`` time units after the first purchase,
    before knowing anything about them (BG/NBD, Fader, Hardie & Lee 2005 eq. 9): the tracking-plot forecast."""
    t = np.asarray(t_units, dtype="float64")
    r, alpha, a, b = prm.r, prm.alpha, prm.a, prm.b
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


# ----------------------------------------------------------------------------------------------- Pareto/NBD


@dataclass(frozen=True)
class ParetoNbdParams:
    """Fitted Pareto/NBD parameters (purchase rate: gamma(r, alpha); dropout rate: gamma(s, beta))."""

    r: float
    alpha: float
    s: float
    beta: float
    time_unit_days: float
    n_persons: int
    fit_seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_pareto_nbd(summary: pd.DataFrame, time_unit_days: float = 7) -> tuple[ParetoNbdParams, object]:
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987) MAP fit with flat priors (= maximum likelihood) by
    pymc-marketing's ``ParetoNBDModel``; returns the estimates and the fitted model, whose methods predict."""
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import ParetoNBDModel

    frame = to_model_frame(summary, time_unit_days)
    start = time.perf_counter()
    model = ParetoNBDModel(model_config={k: Prior("HalfFlat") for k in ("r", "alpha", "s", "beta")})
    est = _map_point(model, frame[["customer_id", "frequency", "recency", "T"]], ("r", "alpha", "s", "beta"))
    prm = ParetoNbdParams(**est, time_unit_days=float(time_unit_days), n_persons=len(frame),
                          fit_seconds=round(time.perf_counter() - start, 3))
    return prm, model


def _pnbd_frame(summary: pd.DataFrame, unit: float) -> pd.DataFrame:
    return to_model_frame(summary, unit)[["customer_id", "frequency", "recency", "T"]]


def pareto_nbd_expected_purchases(model, prm: ParetoNbdParams, summary: pd.DataFrame,
                                  horizon_days: float) -> np.ndarray:
    """E[X(T, T + t) | x, t_x, T] under the fitted Pareto/NBD (pymc-marketing, Fader & Hardie 2005 note)."""
    unit = prm.time_unit_days
    pred = model.expected_purchases(_pnbd_frame(summary, unit), future_t=horizon_days / unit)
    return np.asarray(pred.mean(("chain", "draw")).values, dtype="float64").ravel()


def pareto_nbd_probability_alive(model, prm: ParetoNbdParams, summary: pd.DataFrame) -> np.ndarray:
    """P(still active) under the fitted Pareto/NBD."""
    pred = model.expected_probability_alive(_pnbd_frame(summary, prm.time_unit_days))
    return np.asarray(pred.mean(("chain", "draw")).values, dtype="float64").ravel()


def pareto_nbd_unconditional(prm: ParetoNbdParams, t_units) -> np.ndarray:
    """E[X(t)] of the Pareto/NBD: r beta / (alpha (s - 1)) [1 - (beta / (beta + t))^(s - 1)]."""
    t = np.asarray(t_units, dtype="float64")
    return prm.r * prm.beta / (prm.alpha * (prm.s - 1)) * (1 - (prm.beta / (prm.beta + t)) ** (prm.s - 1))
