"""Acquisition and retention: AARRR funnel by channel x platform (immature cells marked), cohort retention, D1/D7/D30."""
import altair as alt
import pandas as pd
import streamlit as st

from ulm.dashboard import data, ui

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("Acquisition and retention", ctx, "the funnel follows all filters; cohort retention the date range only")
grain = st.segmented_control("cohort grain", ["day", "week", "month"], default="month", key="funnel_grain") or "month"


def _label(step: str) -> str:
    return {"activated": "activation", "monetized": "monetized", "referred": "referred"}.get(
        step, step.replace("retained_d", "D"))


st.subheader("AARRR funnel")
if not data.has(snap, "marts.mart_aarrr_funnel"):
    ui.absent("marts.mart_aarrr_funnel")
else:
    steps = data.funnel_steps(snap)
    totals = data.funnel_totals(snap, f, grain)
    if not len(totals) or pd.isna(totals["acquired"][0]):
        ui.empty("acquisition cohorts")
    else:
        row = totals.iloc[0]
        cards = [("acquired", ui.fmt_int(row["acquired"]), None)] + [
            (_label(s), ui.fmt_pct(row[f"{s}_rate"]),
             f"{ui.fmt_int(row[s])} of {ui.fmt_int(row[f'{s}_base'])} acquired in mature cohorts") for s in steps]
        for i in range(0, len(cards), 4):
            for col, (label, value, help_) in zip(st.columns(4), cards[i:i + 4]):
                col.metric(label, value, border=True, help=help_)
        bars = pd.DataFrame({"step": [_label(s) for s in steps], "rate": [row[f"{s}_rate"] for s in steps],
                             "order": range(len(steps))})
        st.altair_chart(alt.Chart(bars).mark_bar().encode(
            x=alt.X("step:N", sort=alt.SortField("order"), title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rate:Q", axis=alt.Axis(format="%"), title="share of acquired"),
            tooltip=["step", alt.Tooltip("rate:Q", format=".1%")]).properties(height=220), width="stretch")
        st.caption("Each rate counts only cohorts whose window for that step has fully passed (mature cohorts).")

        st.markdown("**By channel × platform** (rates over mature cohorts; *immature*: no cohort in the range is "
                    "mature for that step yet)")
        by = data.funnel_by_channel_platform(snap, f, grain)
        rate_cols = [f"{s}_rate" for s in steps]
        table = by[["acquisition_channel", "platform", "acquired", *rate_cols]].rename(
            columns={f"{s}_rate": _label(s) for s in steps})
        shown = [_label(s) for s in steps]
        styled = (table.style.format({c: "{:.1%}" for c in shown}, na_rep="immature")
                  .map(lambda v: "color: #999; font-style: italic" if pd.isna(v) else "", subset=shown))
        st.dataframe(styled, hide_index=True, width="stretch")

        with st.expander("Cohort cells as in the mart (`mart_aarrr_funnel`)"):
            cells = data.funnel_cells(snap, f, grain)
            rates = [c for c in cells.columns if c.endswith("_rate")]
            st.dataframe(cells.style.format({c: "{:.1%}" for c in rates}, na_rep="immature"), hide_index=True,
                         width="stretch")

st.subheader("Retention trend")
trend = data.retention_trend(snap, f, "week" if grain == "month" else grain)
if len(trend):
    trend = trend.assign(retention=trend["day"].map(lambda d: f"D{d}"))
    st.altair_chart(alt.Chart(trend).mark_line(point=True).encode(
        x=alt.X("cohort_date:T", title="registration cohort"),
        y=alt.Y("rate:Q", axis=alt.Axis(format="%"), title="retained"),
        color=alt.Color("retention:N", sort=[f"D{d}" for d in data.retention_days(snap)]),
        tooltip=["cohort_date:T", "retention:N", alt.Tooltip("rate:Q", format=".1%"), "acquired:Q"],
    ).properties(height=260), width="stretch")
    st.caption("Share of a cohort active exactly N days after registering, mature cohorts only "
               f"({'weekly' if grain != 'day' else 'daily'} cohorts, `mart_aarrr_funnel`).")
elif data.has(snap, "marts.mart_aarrr_funnel"):
    ui.empty("mature cohorts")

st.subheader("Cohort retention")
if not data.has(snap, "marts.mart_cohort_retention"):
    ui.absent("marts.mart_cohort_retention")
else:
    c1, c2 = st.columns(2)
    rgrain = c1.segmented_control("cohort", ["week", "month"], default="week", key="ret_grain") or "week"
    metric = c2.segmented_control("measure", ["active_rate", "purchase_rate"], default="active_rate",
                                  key="ret_metric") or "active_rate"
    ret = data.cohort_retention(snap, f, rgrain).dropna(subset=[metric])
    if not len(ret):
        ui.empty("cohorts")
    else:
        ret = ret.assign(cohort=ret["cohort_start"].dt.strftime("%Y-%m-%d") + " (" + ret["cohort_size"].astype(str) + ")")
        st.altair_chart(ui.heatmap(ret, "period_number", "cohort", metric, metric.replace("_", " "),
                                   x_title=f"{rgrain}s since registration", y_title="cohort (size)",
                                   text=len(ret) <= 400).properties(height=max(220, 18 * ret["cohort"].nunique())),
                        width="stretch")
