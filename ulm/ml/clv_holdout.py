"""CLV checked on what it predicts (docs/ML.md#clv-holdout): calibrate on the purchase history up to one day,
predict the repeat purchases of the following period, compare with what happened.

``validate(warehouse, calibration_end, holdout_end)`` reads the published marts (built as of ``holdout_end`` or
later):

* the calibration summary: ``fct_clv_snapshots`` at ``calibration_end`` (frequency, recency, T of every person who
  had purchased by then: the cohort);
* each cohort person's repeat purchase days in ``(calibration_end, holdout_end]`` and the cohort's repeat purchase
  days per week since its first purchase (``fct_person_activity_daily``).

Two models, same calibration, same holdout: BG/NBD (``ulm.ml.clv``, the champion: the CLV model training uses)
and Pareto/NBD (pymc-marketing ``ParetoNBDModel``, the challenger). Per model:

* conditional expectations per person over the holdout, their total vs the actual total (the Fader-Hardie-Lee
  check), per-person MAE / RMSE, and the table / plot "calibration vs holdout" (mean actual and predicted holdout
  purchases by calibration frequency 0..7+);
* the tracking forecast: the cohort's expected cumulative repeat purchases week by week from each person's first
  purchase day (unconditional E[X(t)]), vs actual, over calibration and holdout (plot + table);
* P(alive) and the frequency/recency matrix (expected holdout purchases by frequency x recency at the longest T).

Each model is one MLflow run in ``ulm-clv`` named ``<model>-<calibration_end>-<run id prefix>``, with the same
metric names so the runs table compares them.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import duckdb
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from ulm.core.errors import UlmError
from ulm.ml import clv, plots, tracking
from ulm.ml.quiet import quiet
from ulm.warehouse import PUBLISHED, connect_read_only, table_exists

log = logging.getLogger("ulm.ml.clv_holdout")

FREQUENCY_CENSOR = 7  # calibration frequencies 7+ share a bin (Fader, Hardie & Lee 2005, figure 4)
MATRIX_MAX_FREQUENCY = 30


@dataclass
class HoldoutData:
    calibration_end: date
    holdout_end: date
    summary: pd.DataFrame  # mart_clv_summary columns + first_offset_days, holdout_purchases
    weekly: pd.DataFrame  # week, actual repeat purchase days of the cohort
    start: date  # the cohort's first purchase day (week 0 starts here)

    @property
    def holdout_days(self) -> int:
        return (self.holdout_end - self.calibration_end).days


@dataclass
class ModelResult:
    name: str  # bgnbd | pareto_nbd
    role: str  # champion | challenger
    params: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    run_id: str | None = None  # its MLflow run, once logged


@dataclass
class Predictor:
    """What the check needs of a fitted model: conditional expectation, unconditional E[X(t)], P(alive)."""

    name: str
    role: str
    params: dict[str, float]
    unit: float
    conditional: Callable[[pd.DataFrame, float], np.ndarray]
    unconditional: Callable[[np.ndarray], np.ndarray]
    p_alive: Callable[[pd.DataFrame], np.ndarray]


# ----------------------------------------------------------------------------------------------- data


def load(con: duckdb.DuckDBPyConnection, calibration_end: date, holdout_end: date,
         schema: str = PUBLISHED) -> HoldoutData:
    """Calibration summary + holdout purchases of the cohort from the published marts of ``schema``."""
    if holdout_end <= calibration_end:
        raise UlmError(f"holdout end {holdout_end}: must be after the calibration end {calibration_end}")
    for table in ("fct_clv_snapshots", "fct_person_activity_daily"):
        if not table_exists(con, schema, table):
            raise UlmError(f"table {schema}.{table} missing (rule: the CLV holdout check reads the published marts; "
                           f"build them as of {holdout_end} or later)")
    newest = con.execute(f"select max(activity_date) from {schema}.fct_person_activity_daily").fetchone()[0]
    if newest is None or newest < holdout_end:
        raise UlmError(f"{schema}.fct_person_activity_daily: column activity_date ends {newest}, before the holdout "
                       f"end {holdout_end} (rule: build the marts as of {holdout_end} or later)")
    params = {"cal": calibration_end, "end": holdout_end}
    summary = con.execute(_SUMMARY_SQL.format(schema=schema), params).df()
    if summary.empty:
        raise UlmError(f"{schema}.fct_clv_snapshots: column snapshot_date has no {calibration_end} (rule: a month "
                       "end or the marts' as-of day with purchases before it)")
    weekly = con.execute(_WEEKLY_SQL.format(schema=schema), params).df()
    start = con.execute(f"select min(first_day) from ({_FIRST_SQL.format(schema=schema)})",
                        {"cal": calibration_end}).fetchone()[0]
    return HoldoutData(calibration_end, holdout_end, summary, weekly, start)


_FIRST_SQL = """
    select a.person_id, min(a.activity_date) as first_day
    from {schema}.fct_person_activity_daily as a
    where a.is_purchase_day and a.activity_date <= $cal
      and a.person_id in (select person_id from {schema}.fct_clv_snapshots where snapshot_date = $cal)
    group by a.person_id"""

_SUMMARY_SQL = """
with first as ({first}),
holdout as (
    select person_id, count(*) as holdout_purchases
    from {{schema}}.fct_person_activity_daily
    where is_purchase_day and activity_date > $cal and activity_date <= $end
    group by person_id
)
select s.person_id, s.frequency, s.recency_days, s.t_days, s.monetary_value,
       f.first_day - min(f.first_day) over () as first_offset_days,
       coalesce(h.holdout_purchases, 0) as holdout_purchases
from {{schema}}.fct_clv_snapshots as s
join first as f using (person_id)
left join holdout as h using (person_id)
where s.snapshot_date = $cal
order by s.person_id""".format(first=_FIRST_SQL)

_WEEKLY_SQL = """
with first as ({first}),
start as (select min(first_day) as day0 from first)
select cast(floor((a.activity_date - start.day0) / 7) as integer) as week, count(*) as repeat_purchases
from {{schema}}.fct_person_activity_daily as a
join first as f using (person_id)
cross join start
where a.is_purchase_day and a.activity_date > f.first_day and a.activity_date <= $end
group by all order by week""".format(first=_FIRST_SQL)


# ----------------------------------------------------------------------------------------------- models


def bgnbd_predictor(summary: pd.DataFrame, unit: float) -> Predictor:
    prm = clv.fit_clv(summary, time_unit_days=unit)
    params = {k: prm.as_dict()[k] for k in ("r", "alpha", "a", "b", "p", "q", "v", "fit_seconds")}
    return Predictor("bgnbd", "champion", params, unit,
                     conditional=lambda s, h: clv.expected_purchases(prm, s, h),
                     unconditional=lambda t: clv.unconditional_expected_purchases(prm, t),
                     p_alive=lambda s: clv.probability_alive(prm, s))


def pareto_nbd_predictor(summary: pd.DataFrame, unit: float) -> Predictor:
    prm, model = clv.fit_pareto_nbd(summary, time_unit_days=unit)
    params = {k: prm.as_dict()[k] for k in ("r", "alpha", "s", "beta", "fit_seconds")}
    return Predictor("pareto_nbd", "challenger", params, unit,
                     conditional=lambda s, h: clv.pareto_nbd_expected_purchases(model, prm, s, h),
                     unconditional=lambda t: clv.pareto_nbd_unconditional(prm, t),
                     p_alive=lambda s: clv.pareto_nbd_probability_alive(model, prm, s))


# ----------------------------------------------------------------------------------------------- evaluation


def by_frequency(summary: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """Mean actual and predicted holdout purchases by calibration frequency (0 .. FREQUENCY_CENSOR+)."""
    df = pd.DataFrame({"frequency": np.minimum(summary["frequency"].to_numpy(int), FREQUENCY_CENSOR),
                       "actual": summary["holdout_purchases"].to_numpy(float), "predicted": predicted})
    out = df.groupby("frequency").agg(persons=("actual", "size"), actual=("actual", "mean"),
                                      predicted=("predicted", "mean")).reset_index()
    out["frequency_label"] = out["frequency"].astype(str).where(out["frequency"] < FREQUENCY_CENSOR,
                                                                f"{FREQUENCY_CENSOR}+")
    return out


def cumulative(data: HoldoutData, pred: Predictor) -> pd.DataFrame:
    """Week by week: actual and expected cumulative repeat purchase days of the cohort since its first purchase.

    Expected = sum over persons of E[X(t)] with t = days from the person's first purchase day to the week's last
    day (persons grouped by first purchase day, so the cost is days x weeks, not persons x weeks)."""
    weeks = np.arange(int((data.holdout_end - data.start).days // 7) + 1)
    offsets = data.summary.groupby("first_offset_days").size()
    elapsed = np.maximum(0, (7 * weeks + 6)[None, :] - offsets.index.to_numpy()[:, None])
    expected = (pred.unconditional(elapsed / pred.unit) * offsets.to_numpy()[:, None]).sum(axis=0)
    actual = data.weekly.set_index("week")["repeat_purchases"].reindex(weeks, fill_value=0).cumsum().to_numpy()
    cal_week = (data.calibration_end - data.start).days // 7
    return pd.DataFrame({"week": weeks + 1, "actual_cumulative": actual, "expected_cumulative": expected,
                         "period": np.where(weeks <= cal_week, "calibration", "holdout")})


def matrices(data: HoldoutData, pred: Predictor) -> dict[str, pd.DataFrame]:
    """P(alive) and expected holdout purchases on a frequency x recency grid at the cohort's longest T."""
    big_t = float(data.summary["t_days"].max())
    max_x = int(min(data.summary["frequency"].max(), MATRIX_MAX_FREQUENCY))
    recency = np.arange(0, int(big_t // pred.unit) + 1) * pred.unit
    x, t_x = np.meshgrid(np.arange(max_x + 1), recency, indexing="ij")
    grid = pd.DataFrame({"person_id": np.arange(x.size), "frequency": x.ravel(), "recency_days": t_x.ravel(),
                         "t_days": big_t, "monetary_value": 0.0})
    # x repeat purchase days fit in recency t_x only when 1 <= x <= t_x days; x = 0 means t_x = 0
    x_, r_ = grid["frequency"].to_numpy(), grid["recency_days"].to_numpy()
    possible = np.where(x_ == 0, r_ == 0, x_ <= r_)
    out = {}
    for name, values in (("p_alive_matrix", pred.p_alive(grid)),
                         ("frequency_recency_matrix", pred.conditional(grid, data.holdout_days))):
        table = pd.DataFrame(np.where(possible, values, np.nan).reshape(x.shape),
                             index=pd.Index(np.arange(max_x + 1), name="frequency"),
                             columns=[f"recency_{int(r // pred.unit)}" for r in recency])
        out[name] = table
    return out


def _pct(predicted: float, actual: float) -> float:
    return float(100 * (predicted - actual) / actual) if actual else float("nan")


def evaluate(data: HoldoutData, pred: Predictor) -> ModelResult:
    """The holdout metrics and tables of one fitted model."""
    s = data.summary
    predicted = pred.conditional(s, data.holdout_days)
    actual = s["holdout_purchases"].to_numpy(float)
    track = cumulative(data, pred)
    cal = track[track["period"] == "calibration"].iloc[-1]
    end = track.iloc[-1]
    metrics = {
        "holdout_actual_repeat_purchases": float(actual.sum()),
        "holdout_predicted_repeat_purchases": float(predicted.sum()),
        "holdout_total_error_pct": _pct(predicted.sum(), actual.sum()),
        "holdout_mae_per_person": float(np.abs(predicted - actual).mean()),
        "holdout_rmse_per_person": float(np.sqrt(((predicted - actual) ** 2).mean())),
        "calibration_total_error_pct": _pct(cal["expected_cumulative"], cal["actual_cumulative"]),
        "holdout_tracking_error_pct": _pct(end["expected_cumulative"] - cal["expected_cumulative"],
                                           end["actual_cumulative"] - cal["actual_cumulative"]),
        "cumulative_total_error_pct": _pct(end["expected_cumulative"], end["actual_cumulative"]),
        "mean_p_alive": float(np.mean(pred.p_alive(s))),
        **{f"param_{k}": float(v) for k, v in pred.params.items()},
    }
    tables = {"calibration_vs_holdout": by_frequency(s, predicted), "cumulative_repeat_transactions": track,
              **matrices(data, pred)}
    return ModelResult(pred.name, pred.role, pred.params, metrics, tables)


# ----------------------------------------------------------------------------------------------- MLflow


def _log_run(data: HoldoutData, res: ModelResult, other: ModelResult, unit: float) -> str:
    name = res.name
    with tempfile.TemporaryDirectory(prefix=f"ulm-clv-{name}-") as tmp, \
            mlflow.start_run(experiment_id=tracking.experiment_id("clv"), run_name=name) as run:
        out = Path(tmp)
        MlflowClient().update_run(run.info.run_id, name=tracking.run_name(name, data.calibration_end, run.info.run_id))
        mlflow.log_params({"model": name, "calibration_end": str(data.calibration_end),
                           "holdout_end": str(data.holdout_end), "holdout_days": data.holdout_days,
                           "time_unit_days": unit, "n_persons": len(data.summary),
                           "n_repeat_buyers": int((data.summary["frequency"] > 0).sum()),
                           "fit": "map", "priors": "HalfFlat (MAP = maximum likelihood)",
                           "frequency_censor": FREQUENCY_CENSOR})
        mlflow.log_metrics({k: v for k, v in res.metrics.items() if np.isfinite(v)})
        mlflow.set_tags({"clv_role": res.role, "mlflow.note.content": _description(data, res, other)})
        for tname, table in res.tables.items():
            table.to_csv(out / f"{tname}.csv", index=tname.endswith("matrix"))
            mlflow.log_artifact(str(out / f"{tname}.csv"))
        for path in _plots(res, other, out):
            mlflow.log_artifact(str(path))
        return run.info.run_id


def _plots(res: ModelResult, other: ModelResult, out: Path) -> list[Path]:
    t = res.tables
    return [plots.calibration_vs_holdout(t["calibration_vs_holdout"], res.name, out,
                                         other=(other.name, other.tables["calibration_vs_holdout"])),
            plots.cumulative_repeat_transactions(t["cumulative_repeat_transactions"], res.name, out,
                                                 other=(other.name, other.tables["cumulative_repeat_transactions"])),
            plots.matrix_heatmap(t["p_alive_matrix"], f"P(alive), {res.name}", out, "p_alive_matrix.png"),
            plots.matrix_heatmap(t["frequency_recency_matrix"], f"expected holdout purchases, {res.name}", out,
                                 "frequency_recency_matrix.png")]


def _description(data: HoldoutData, res: ModelResult, other: ModelResult) -> str:
    m, o = res.metrics, other.metrics
    better = m["holdout_mae_per_person"] < o["holdout_mae_per_person"]
    return (f"**{res.name} ({res.role})**, calibrated to {data.calibration_end}, predicting "
            f"{data.calibration_end} .. {data.holdout_end} ({data.holdout_days} days) for {len(data.summary):,} "
            f"persons. Holdout repeat purchases: predicted {m['holdout_predicted_repeat_purchases']:,.0f} vs actual "
            f"{m['holdout_actual_repeat_purchases']:,.0f} ({m['holdout_total_error_pct']:+.1f}%); cumulative "
            f"since the first purchase {m['cumulative_total_error_pct']:+.1f}%. Per-person MAE "
            f"{m['holdout_mae_per_person']:.3f} vs {o['holdout_mae_per_person']:.3f} for {other.name}: "
            f"{res.name} is {'better' if better else 'not better'} on this holdout.")


# ----------------------------------------------------------------------------------------------- entry


@quiet
def validate(warehouse: Path, calibration_end: date, holdout_end: date, *, time_unit_days: float = 7,
             log_to_mlflow: bool = True, schema: str = PUBLISHED) -> dict[str, ModelResult]:
    """Fit BG/NBD and Pareto/NBD on the calibration period, evaluate both on the holdout and log one MLflow run
    each; returns ``{"bgnbd": ..., "pareto_nbd": ...}``."""
    with connect_read_only(warehouse) as con:
        data = load(con, calibration_end, holdout_end, schema)
    results = {p.name: evaluate(data, p) for p in (bgnbd_predictor(data.summary, time_unit_days),
                                                    pareto_nbd_predictor(data.summary, time_unit_days))}
    champion, challenger = results["bgnbd"], results["pareto_nbd"]
    if log_to_mlflow:
        tracking.configure()
        for res, other in ((champion, challenger), (challenger, champion)):
            res.run_id = _log_run(data, res, other, time_unit_days)
    for res in results.values():
        log.info("CLV holdout %s (%s): predicted %.0f vs actual %.0f repeat purchases (%+.1f%%), MAE %.3f per person",
                 res.name, res.role, res.metrics["holdout_predicted_repeat_purchases"],
                 res.metrics["holdout_actual_repeat_purchases"], res.metrics["holdout_total_error_pct"],
                 res.metrics["holdout_mae_per_person"])
    return results
