"""Channels: LTV/CAC per channel against the pause line, payback days, spend (mart_channel_economics)."""
import altair as alt
import streamlit as st

from ulm.core.settings import param
from ulm.dashboard import data, ui

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("Channels", ctx, "all filters apply (date range: cohort months)")
threshold = float(param("ltv_cac_pause_threshold"))

if not data.has(snap, "marts.mart_channel_economics"):
    ui.absent("marts.mart_channel_economics")
    st.stop()
summary = data.channel_summary(snap, f)
if not len(summary):
    ui.empty("channel cohorts")
    st.stop()

cols = st.columns(4)
cols[0].metric("spend", ui.fmt_money(summary["spend"].sum()), border=True)
cols[1].metric("new persons", ui.fmt_int(summary["new_persons"].sum()), border=True)
total_cac = summary["spend"].sum() / max(summary["new_persons"].sum(), 1)
cols[2].metric("blended CAC", ui.fmt_money(total_cac), border=True)
cols[3].metric("cells to pause", f"{int(summary['cells_pause'].sum())} of {int(summary['cells'].sum())}",
               border=True, help=f"channel × platform × cohort-month cells with LTV/CAC below {threshold:g}")

st.subheader("LTV / CAC by channel")
ratios = summary.dropna(subset=["ltv_cac_ratio"])
if len(ratios):
    st.altair_chart(ui.bar_with_rule(ratios, "acquisition_channel", "ltv_cac_ratio", threshold, "LTV / CAC")
                    .properties(height=300), width="stretch")
st.caption(f"Predicted LTV per person over CAC, spend-weighted over cohort months and platforms; the dashed line is "
           f"the pause threshold `ltv_cac_pause_threshold` = {threshold:g} (red bars are below it).")
ui.table(summary, width="stretch", column_config={
    "spend": st.column_config.NumberColumn(format="%.2f"), "cac": st.column_config.NumberColumn(format="%.2f"),
    "ltv_per_person": st.column_config.NumberColumn(format="%.2f"),
    "ltv_cac_ratio": st.column_config.NumberColumn(format="%.2f"),
    "median_payback_days": st.column_config.NumberColumn(format="%.0f")})

left, right = st.columns(2)
cells = data.channel_economics(snap, f)
with left:
    st.subheader("Payback days")
    pay = cells.dropna(subset=["payback_days"])
    if len(pay):
        st.altair_chart(alt.Chart(pay).mark_circle(size=80).encode(
            x=alt.X("acquisition_channel:N", title=None), y=alt.Y("payback_days:Q", title="days to pay back CAC"),
            color="platform:N", tooltip=["acquisition_channel", "platform", "cohort_month:T", "payback_days",
                                         alt.Tooltip("cac:Q", format=".2f")]).properties(height=280), width="stretch")
    st.caption("Per channel × platform × cohort month; cells that have not paid back yet are not shown.")
with right:
    st.subheader("Spend per month")
    spend = data.channel_spend_monthly(snap, f)
    st.altair_chart(alt.Chart(spend).mark_bar().encode(
        x=alt.X("yearmonth(cohort_month):O", title=None), y=alt.Y("spend:Q"),
        color=alt.Color("acquisition_channel:N", title="channel"),
        tooltip=["acquisition_channel", "cohort_month:T", alt.Tooltip("spend:Q", format=",.2f"), "new_persons"],
    ).properties(height=280), width="stretch")

with st.expander("All cells (`mart_channel_economics`)"):
    ui.table(cells, width="stretch")
