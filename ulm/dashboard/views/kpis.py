"""KPIs: cards with trend, the scorecard with levels, a KPI over time, the monthly table."""
import altair as alt
import pandas as pd
import streamlit as st

from ulm.dashboard import data, ui

# column of mart_kpi_daily -> (label, format, higher is better)
CARDS = {
    "dau": ("DAU", ui.fmt_int, True), "wau": ("WAU", ui.fmt_int, True), "mau": ("MAU", ui.fmt_int, True),
    "stickiness": ("stickiness (DAU/MAU)", ui.fmt_pct, True), "new_persons": ("new persons", ui.fmt_int, True),
    "net_revenue_30d": ("net revenue 30d", ui.fmt_money, True), "gmv_30d": ("GMV 30d", ui.fmt_money, True),
    "arpu_30d": ("ARPU 30d", ui.fmt_money, True), "arppu_30d": ("ARPPU 30d", ui.fmt_money, True),
    "paid_conversion_30d": ("paid conversion 30d", ui.fmt_pct, True),
    "repurchase_rate_90d": ("repurchase rate 90d", ui.fmt_pct, True),
    "monthly_churn_rate": ("monthly churn", ui.fmt_pct, False),
    "k_factor": ("K-factor", lambda v: ui.fmt_num(v, 3), True),
    "fission_ratio_30d": ("fission ratio 30d", ui.fmt_pct, True), "nps": ("NPS", lambda v: ui.fmt_num(v, 1), True),
    "high_value_person_share": ("high-value persons", ui.fmt_pct, True),
    "winback_rate_30d": ("win-back rate 30d", ui.fmt_pct, True),
    "private_domain_gmv_share": ("private-domain GMV", ui.fmt_pct, True),
    "cross_platform_rate": ("cross-platform", ui.fmt_pct, True),
}
DELTA_DAYS = 30

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("KPIs", ctx, "KPI marts have no channel / platform: only the date range applies")

daily = data.kpi_daily(snap, f)
if not data.has(snap, "marts.mart_kpi_daily"):
    ui.absent("marts.mart_kpi_daily")
elif not len(daily):
    ui.empty("KPI days")
else:
    daily = daily.sort_values("kpi_date").reset_index(drop=True)
    last = daily.iloc[-1]
    day = last["kpi_date"].date()
    before = daily[daily["kpi_date"] <= pd.Timestamp(day) - pd.Timedelta(days=DELTA_DAYS)]
    prev = before.iloc[-1] if len(before) else None
    st.subheader(f"On {day}")
    st.caption(f"`mart_kpi_daily`; deltas vs {DELTA_DAYS} days earlier; sparkline over the range.")
    shown = [c for c in CARDS if c in daily.columns]
    for i in range(0, len(shown), 4):
        for col, name in zip(st.columns(4), shown[i:i + 4]):
            label, fmt, higher = CARDS[name]
            delta = None
            if prev is not None and not pd.isna(last[name]) and not pd.isna(prev[name]):
                diff = float(last[name]) - float(prev[name])
                delta = f"{diff * 100:+.1f} pp" if fmt is ui.fmt_pct else ("+" if diff >= 0 else "") + fmt(diff)
            series = daily[name].astype("float64").tail(120).ffill().fillna(0).tolist()
            col.metric(label, fmt(last[name]), delta, delta_color="normal" if higher else "inverse", border=True,
                       chart_data=series, chart_type="line")

st.subheader("Scorecard")
card = data.scorecard(snap, ctx.day)
if not data.has(snap, "marts.mart_scorecard"):
    ui.absent("marts.mart_scorecard")
elif not len(card):
    ui.empty("scorecard")
else:
    top = card.iloc[0]
    c1, c2 = st.columns([1, 3])
    c1.metric("composite index", ui.fmt_num(top["composite_index"], 1), border=True,
              help="weighted mean of the group scores (0 = baseline not reached, 100 = challenge reached)")
    groups = card.groupby("kpi_group", as_index=False).agg(group_score=("group_score", "first"),
                                                           weight=("group_weight", "first"))
    c2.dataframe(groups, hide_index=True, width="stretch",
                 column_config={"group_score": st.column_config.NumberColumn(format="%.1f"),
                                "weight": st.column_config.NumberColumn(format="%.2f")})
    rows = list(card.itertuples())
    for i in range(0, len(rows), 3):
        for col, r in zip(st.columns(3), rows[i:i + 3]):
            pct = abs(r.target) <= 1.5 and abs(r.baseline) <= 1.5 and r.kpi not in ("k_factor",)
            fmt = ui.fmt_pct if pct else (lambda v: ui.fmt_num(v, 3) if abs(v) < 10 else ui.fmt_num(v, 1))
            with col.container(border=True):
                st.metric(r.kpi, fmt(r.value) if not pd.isna(r.value) else "–",
                          help=f"baseline {fmt(r.baseline)} · target {fmt(r.target)} · challenge {fmt(r.challenge)}"
                               f" · {'higher' if r.higher_is_better else 'lower'} is better")
                level = r.level_reached if isinstance(r.level_reached, str) else None
                st.markdown(f"{ui.LEVEL_BADGES.get(level, ':gray-background[no value]')} · score "
                            f"{ui.fmt_num(r.score, 0)} · {r.kpi_group}")

st.subheader("A KPI over time")
if len(daily):
    numeric = [c for c in daily.columns if c != "kpi_date" and pd.api.types.is_numeric_dtype(daily[c])]
    pick = st.selectbox("KPI", numeric, index=numeric.index("dau") if "dau" in numeric else 0, key="kpi_pick")
    st.altair_chart(alt.Chart(daily[["kpi_date", pick]].astype({pick: "float64"})).mark_line().encode(
        x=alt.X("kpi_date:T", title=None), y=alt.Y(f"{pick}:Q", title=pick),
        tooltip=["kpi_date:T", alt.Tooltip(f"{pick}:Q", format=",.4g")]).properties(height=260), width="stretch")

st.subheader("Monthly")
monthly = data.kpi_monthly(snap, f)
if not data.has(snap, "marts.mart_kpi_monthly"):
    ui.absent("marts.mart_kpi_monthly")
elif len(monthly):
    ui.table(monthly, width="stretch",
                 column_config={"month_start": st.column_config.DateColumn("month", format="YYYY-MM")})
    st.caption("`mart_kpi_monthly`; `month_complete` false: the month is still running.")
