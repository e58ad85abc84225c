"""The marts that answer analysts' questions directly (issue #12, docs/METRICS.md), on one real generated build.

One generated landing (800 persons, 120 days to 2025-12-31, seed 3), ingested and built with every dbt data and unit
test. The checks recompute each new mart from the finer one (or from the intermediate layer) independently:

* ``mart_channel_monthly`` is ``mart_channel_economics`` with its platforms summed, ratios recomputed from the sums;
* ``mart_channel_summary`` is ``mart_channel_monthly`` summed per channel; payback from the observed revenue curve;
* ``mart_aarrr_funnel_by_channel`` counts are the platform funnel's counts summed;
* every windowed count and rate of the funnels and of ``mart_cohort_retention`` is null exactly while immature;
* ``mart_kocs`` holds the ``is_koc`` persons of ``mart_referral_persons``.

With the default parameters this small population has no KOC, so the KOC check also runs on a copy of the
warehouse whose four KOC models are rebuilt with ``koc_min_attributed_purchases`` = 1 (env ULM_PARAMS); the main
build keeps the defaults, which the dbt unit tests assume.
"""
from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ulm.core.context import RunContext
from ulm.core.settings import PARAMS_ENV, params
from ulm.generate import generate
from ulm.ingest import ingest_dir
from ulm.transform.dbt import build

pytestmark = pytest.mark.slow

AS_OF = date(2025, 12, 31)
KOC_PARAMS = {"koc_min_attributed_purchases": 1}
KOC_MODELS = "int_person_koc mart_referral_persons mart_referral_tier_counts mart_kocs"
FUNNEL_COUNTS = ("activated", "retained_d1", "retained_d7", "retained_d30", "monetized", "referred")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("analyst_marts")
    landing, wh = base / "landing", base / "wh.duckdb"
    generate(landing, persons=800, days=120, end_date=AS_OF, seed=3, progress=False)
    ingest_dir(landing, wh, progress=False)
    # every dbt unit test too: the new maturity tests must run against this project, not only parse
    build(RunContext.create(as_of=AS_OF, warehouse=wh), progress=False, unit_tests=True)
    return wh


@pytest.fixture(scope="module")
def koc_warehouse(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the warehouse whose KOC models (and their data tests) are rebuilt with a lower KOC threshold."""
    wh = tmp_path_factory.mktemp("analyst_marts_koc") / "wh.duckdb"
    shutil.copy(warehouse, wh)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PARAMS_ENV, json.dumps(KOC_PARAMS))
        build(RunContext.create(as_of=AS_OF, warehouse=wh), select=KOC_MODELS, progress=False)
    return wh


def _df(wh: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute(sql).df()


def _one(wh: Path, sql: str):
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute(sql).fetchone()


def _mismatches(wh: Path, left: str, right: str) -> int:
    """Rows of either query missing from the other (multiset, nulls compare equal)."""
    sql = f"select count(*) from ((({left}) except all ({right})) union all (({right}) except all ({left})))"
    return _one(wh, sql)[0]


# ----------------------------------------------------------------------------------------------- channel economics
def test_channel_monthly_is_channel_economics_with_platforms_summed(warehouse: Path) -> None:
    totals = _one(warehouse, """select (select sum(spend) from marts.mart_channel_monthly),
                                       (select sum(spend) from marts.mart_channel_economics),
                                       (select sum(new_persons) from marts.mart_channel_monthly),
                                       (select count(*) from intermediate.int_persons)""")
    assert totals[0] == totals[1] and totals[0] > 0
    assert totals[2] == totals[3]
    summed = """select acquisition_channel, cohort_month, sum(spend) as spend, sum(new_persons) as new_persons,
                       sum(paying_persons) as paying_persons
                from marts.mart_channel_economics group by 1, 2"""
    monthly = """select acquisition_channel, cohort_month, spend, cast(new_persons as hugeint),
                        cast(paying_persons as hugeint) from marts.mart_channel_monthly"""
    assert _mismatches(warehouse, summed, monthly) == 0
    # ratios from the summed numerator and denominator, never a mean of platform ratios
    bad = _one(warehouse, f"""
        select count(*) filter (where cac is distinct from cast(spend / nullif(new_persons, 0) as decimal(38, 2))),
               count(*) filter (where ltv_cac_ratio is distinct from case when new_persons > 0 and spend > 0
                                      then cast(predicted_ltv_total / spend as double) end),
               count(*) filter (where pause_recommended <> coalesce(new_persons > 0 and spend > 0 and
                                      predicted_ltv_total < {params()['ltv_cac_pause_threshold']} * spend, false)),
               count(*) filter (where predicted_ltv_per_person is distinct from
                                      cast(predicted_ltv_total / nullif(new_persons, 0) as decimal(38, 2)))
        from marts.mart_channel_monthly""")
    assert bad == (0, 0, 0, 0)
    # at least one month whose pooled CAC differs from the mean of its platform CACs (the roll-up matters here)
    differs = _one(warehouse, """
        select count(*) from marts.mart_channel_monthly as m
        join (select acquisition_channel, cohort_month, avg(cac) as mean_cac from marts.mart_channel_economics
              group by 1, 2) as e using (acquisition_channel, cohort_month)
        where abs(m.cac - e.mean_cac) > 0.01""")[0]
    assert differs > 0


def test_channel_monthly_realized_revenue_recomputed_from_activity(warehouse: Path) -> None:
    windows = params()["channel_realized_ltv_days"]
    activity = _df(warehouse, f"""
        select p.acquisition_channel, date_trunc('month', p.registered_date)::date as cohort_month,
               a.activity_date - p.registered_date as day_offset, a.net_revenue
        from intermediate.int_person_daily_activity as a
        join intermediate.int_persons as p using (person_id)
        where a.activity_date <= date '{AS_OF}' and a.net_revenue <> 0""")
    activity["cohort_month"] = pd.to_datetime(activity.cohort_month)
    monthly = _df(warehouse, "select * from marts.mart_channel_monthly")
    mature_seen = 0
    for n in windows:
        expected = (activity[activity.day_offset < n].groupby(["acquisition_channel", "cohort_month"])
                    .net_revenue.sum().astype(float))
        for row in monthly.itertuples():
            month_end = (pd.Timestamp(row.cohort_month) + pd.offsets.MonthEnd(0)).date()
            mature = row.new_persons > 0 and month_end <= AS_OF - timedelta(days=n)
            total = getattr(row, f"realized_net_revenue_{n}d")
            per_person = getattr(row, f"realized_net_revenue_per_person_{n}d")
            assert pd.isna(total) == (not mature) and pd.isna(per_person) == (not mature), (row, n)
            if mature:
                mature_seen += 1
                want = expected.get((row.acquisition_channel, pd.Timestamp(row.cohort_month)), 0.0)
                assert float(total) == pytest.approx(want, abs=0.005)
                assert float(per_person) == pytest.approx(want / row.new_persons, abs=0.0051)  # rounded to cents
    assert mature_seen > 0


def test_channel_summary_rolls_up_the_monthly_mart(warehouse: Path) -> None:
    windows = params()["channel_realized_ltv_days"]
    matured = ",\n".join(
        f"cast(sum(case when realized_net_revenue_{n}d is not null then new_persons else 0 end) as bigint), "
        f"sum(realized_net_revenue_{n}d)" for n in windows)
    summary_cols = ",\n".join(f"matured_persons_{n}d, realized_net_revenue_{n}d" for n in windows)
    rolled = f"""select acquisition_channel, min(cohort_month), max(cohort_month), sum(spend),
                        cast(sum(new_persons) as bigint), cast(sum(paying_persons) as bigint), {matured},
                        sum(predicted_ltv_total)
                 from marts.mart_channel_monthly group by 1"""
    summary = f"""select acquisition_channel, first_cohort_month, last_cohort_month, spend, new_persons,
                         paying_persons, {summary_cols}, predicted_ltv_total
                  from marts.mart_channel_summary"""
    assert _mismatches(warehouse, rolled, summary) == 0
    n_channels = _one(warehouse, "select count(*), count(distinct acquisition_channel) from marts.mart_channel_summary")
    assert n_channels[0] == n_channels[1] == _one(
        warehouse, "select count(distinct acquisition_channel) from marts.mart_channel_monthly")[0]
    bad = _one(warehouse, f"""
        select count(*) filter (where cac is distinct from cast(spend / nullif(new_persons, 0) as decimal(38, 2))),
               count(*) filter (where realized_net_revenue_per_person_30d is distinct from
                                      cast(realized_net_revenue_30d / nullif(matured_persons_30d, 0) as decimal(38, 2))),
               count(*) filter (where pause_recommended <> coalesce(new_persons > 0 and spend > 0 and
                                      predicted_ltv_total < {params()['ltv_cac_pause_threshold']} * spend, false))
        from marts.mart_channel_summary""")
    assert bad == (0, 0, 0)


def test_channel_summary_payback_reads_the_observed_revenue_curve(warehouse: Path) -> None:
    persons = _df(warehouse, f"""select person_id, acquisition_channel, date '{AS_OF}' - registered_date as age
                                 from intermediate.int_persons""")
    revenue = _df(warehouse, f"""
        select p.acquisition_channel, a.activity_date - p.registered_date as day_offset, sum(a.net_revenue) as rev
        from intermediate.int_person_daily_activity as a join intermediate.int_persons as p using (person_id)
        where a.activity_date <= date '{AS_OF}' and a.net_revenue <> 0 group by 1, 2""")
    summary = _df(warehouse, "select acquisition_channel, spend, new_persons, payback_days "
                             "from marts.mart_channel_summary").set_index("acquisition_channel")
    paid_back = 0
    for channel, row in summary.iterrows():
        if row.new_persons > 0 and row.spend == 0:
            assert row.payback_days == 0
            continue
        ages = persons.loc[persons.acquisition_channel == channel, "age"]
        curve = revenue[revenue.acquisition_channel == channel].sort_values("day_offset")
        observed = curve.day_offset.map(lambda k: int((ages >= k).sum()))
        cumulative = (curve.rev.astype(float) / observed).cumsum()
        reached = curve.day_offset[cumulative.values >= float(row.spend) / row.new_persons]
        expected = int(reached.iloc[0]) if len(reached) else None
        got = None if pd.isna(row.payback_days) else int(row.payback_days)
        assert got == expected, channel
        paid_back += got is not None and row.spend > 0
    assert paid_back > 0


# --------------------------------------------------------------------------------------------------------- funnels
def test_funnel_by_channel_is_the_platform_funnel_summed(warehouse: Path) -> None:
    sums = ", ".join(f"cast(sum({c}) as integer)" for c in ("acquired",) + FUNNEL_COUNTS)
    flags = ", ".join(f"bool_and({f})" for f in _flags(warehouse))
    summed = f"""select cohort_grain, cohort_date, acquisition_channel, {sums}, {flags}
                 from marts.mart_aarrr_funnel group by 1, 2, 3"""
    cols = ", ".join(("acquired",) + FUNNEL_COUNTS + tuple(_flags(warehouse)))
    by_channel = f"select cohort_grain, cohort_date, acquisition_channel, {cols} from marts.mart_aarrr_funnel_by_channel"
    assert _mismatches(warehouse, summed, by_channel) == 0
    bad = _one(warehouse, f"""select count(*) filter (where {' or '.join(
        f"{c}_rate is distinct from {c} / acquired" for c in FUNNEL_COUNTS[1:4])}
        or activation_rate is distinct from activated / acquired or monetized_rate is distinct from monetized / acquired
        or referred_rate is distinct from referred / acquired)
        from marts.mart_aarrr_funnel_by_channel""")[0]
    assert bad == 0


def _flags(wh: Path) -> list[str]:
    cols = _df(wh, "select * from marts.mart_aarrr_funnel limit 0").columns
    return [c for c in cols if c.startswith("is_mature")]


@pytest.mark.parametrize("mart", ["mart_aarrr_funnel", "mart_aarrr_funnel_by_channel"])
def test_funnel_counts_and_rates_are_null_until_their_step_is_mature(warehouse: Path, mart: str) -> None:
    prm = params()
    windows = {"activated": ("is_mature_activation", "activation_rate", prm["activation_window_days"]),
               "monetized": ("is_mature_monetized", "monetized_rate", prm["monetized_window_days"]),
               "referred": ("is_mature_referred", "referred_rate", prm["referred_window_days"])}
    windows.update({f"retained_d{n}": (f"is_mature_d{n}", f"retained_d{n}_rate", n) for n in prm["retention_days"]})
    df = _df(warehouse, f"select * from marts.{mart}")
    start = pd.to_datetime(df.cohort_date)
    last_day = pd.Series(start, index=df.index)
    last_day[df.cohort_grain == "week"] = start + pd.Timedelta(days=6)
    last_day[df.cohort_grain == "month"] = start + pd.offsets.MonthEnd(0)
    for count, (flag, rate, n) in windows.items():
        expected = (last_day + pd.Timedelta(days=n)) <= pd.Timestamp(AS_OF)
        assert (df[flag] == expected).all(), flag
        assert (df[count].isna() == ~df[flag]).all(), count
        assert (df[rate].isna() == ~df[flag]).all(), rate
        assert df[flag].any() and not df[flag].all(), flag  # both kinds of cohort exist as of this day
    assert (df.is_mature == df[[f for f, _, _ in windows.values()]].all(axis=1)).all()
    assert df.acquired.notna().all()


def test_cohort_retention_nulls_only_the_period_not_yet_ended(warehouse: Path) -> None:
    df = _df(warehouse, "select * from marts.mart_cohort_retention")
    start = pd.to_datetime(df.cohort_start)
    k = df.period_number.astype(int)
    week_end = start + pd.to_timedelta(7 * (k + 1) - 1, unit="D")
    month_end = pd.Series([s + pd.DateOffset(months=int(n) + 1) - pd.Timedelta(days=1) for s, n in zip(start, k)],
                          index=df.index)
    period_end = week_end.where(df.cohort_grain == "week", month_end)
    assert (df.is_mature == (period_end <= pd.Timestamp(AS_OF))).all()
    for col in ("active_persons", "purchasing_persons", "active_rate", "purchase_rate"):
        assert (df[col].isna() == ~df.is_mature).all(), col
    # 2025-12-31 is a Wednesday and a month end: each week cohort's last period is partial, every month period ended
    weeks = df[df.cohort_grain == "week"]
    last = weeks.groupby("cohort_start").period_number.transform("max") == weeks.period_number
    assert (~weeks.is_mature == last).all()
    assert df[df.cohort_grain == "month"].is_mature.all()


def test_scorecard_d7_retention_reads_mature_cohorts_only(warehouse: Path) -> None:
    got = _one(warehouse, "select value from marts.mart_scorecard where kpi = 'd7_retention'")[0]
    want = _one(warehouse, f"""select sum(retained_d7) / sum(acquired) from marts.mart_aarrr_funnel_by_channel
                               where cohort_grain = 'day' and cohort_date > date '{AS_OF}' - 37
                                 and cohort_date <= date '{AS_OF}' - 7""")[0]
    assert got is not None and got == pytest.approx(want)


# ------------------------------------------------------------------------------------------------------------ KOCs
def test_kocs_are_the_koc_persons_of_mart_referral_persons(warehouse: Path, koc_warehouse: Path) -> None:
    kocs = """select person_id, ugc_posts, share_attributed_purchases, direct_reach, reach, spreader_rank, spreader_tier
              from marts.mart_kocs"""
    referral = """select person_id, ugc_posts, share_attributed_purchases, direct_reach, reach, spreader_rank, spreader_tier
                  from marts.mart_referral_persons where is_koc"""
    counts = []
    for wh in (warehouse, koc_warehouse):
        assert _mismatches(wh, kocs, referral) == 0
        n, counted = _one(wh, """select (select count(*) from marts.mart_kocs),
            (select persons from marts.mart_referral_tier_counts where segment = 'koc')""")
        assert n == counted
        consent = _one(wh, """select count(*) from marts.mart_kocs as k join marts.dim_persons as d using (person_id)
                              where k.consent_marketing is distinct from coalesce(d.consent_marketing, false)
                                 or k.consent_analytics is distinct from coalesce(d.consent_analytics, false)""")[0]
        assert consent == 0
        counts.append(n)
    assert counts[1] > counts[0]  # the lower threshold finds KOCs, so the comparison above was not of empty sets
    minimum = _one(koc_warehouse, "select min(share_attributed_purchases), min(ugc_posts) from marts.mart_kocs")
    assert minimum[0] >= KOC_PARAMS["koc_min_attributed_purchases"] and minimum[1] >= 1
