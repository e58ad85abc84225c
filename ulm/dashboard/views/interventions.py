"""Interventions: audience size per rule, treated vs holdout uplift with counts, alerts."""
import altair as alt
import pandas as pd
import streamlit as st

from ulm.dashboard import data, ui

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("Interventions", ctx, "date range applies (audience day); channel / platform filters apply to audiences")

st.subheader("Audiences")
aud = data.audiences(snap, f)
if not data.has(snap, "marts.mart_interventions"):
    ui.absent("marts.mart_interventions")
elif not len(aud):
    ui.empty("audiences")
else:
    day = aud["audience_date"].max()
    latest = aud[aud["audience_date"] == day]
    st.caption(f"Latest audience day {day.date()}: persons per rule, holdout included (`mart_interventions`).")
    cols = st.columns(max(len(latest), 1))
    for col, r in zip(cols, latest.itertuples()):
        col.metric(r.rule_id, ui.fmt_int(r.audience), border=True,
                   help=f"{r.action}: {r.treated:,} treated, {r.holdout:,} holdout")
    st.altair_chart(alt.Chart(aud).mark_bar().encode(
        x=ui.day_axis("audience_date"), y=alt.Y("audience:Q", title="persons"), color="rule_id:N",
        tooltip=["audience_date:T", "rule_id", "treated", "holdout", "audience"]).properties(height=220),
        width="stretch")
    ui.table(aud, width="stretch",
                 column_config={"audience_date": st.column_config.DateColumn(format="YYYY-MM-DD")})

st.subheader("Treated vs holdout")
out = data.intervention_outcomes(snap, f)
if not data.has(snap, "marts.mart_intervention_outcomes"):
    ui.absent("marts.mart_intervention_outcomes")
elif not len(out):
    ui.empty("outcomes")
else:
    pooled = data.uplift_summary(snap, f)
    if len(pooled):
        long = pd.concat([
            pooled.assign(group=g, active_share=pooled[f"{g}_active_share"], persons=pooled[f"{g}_persons"],
                          active=pooled[f"{g}_active_persons"]) for g in ("treated", "holdout")])
        long = long[["rule_id", "group", "active_share", "persons", "active"]].dropna(subset=["active_share"])
        base = alt.Chart(long).encode(x=alt.X("group:N", title=None, sort=["treated", "holdout"],
                                              axis=alt.Axis(labelAngle=0)),
                                      y=alt.Y("active_share:Q", axis=alt.Axis(format="%"), title="active afterwards"))
        bars = base.mark_bar().encode(color=alt.Color("group:N", sort=["treated", "holdout"], legend=None),
                                      tooltip=["rule_id", "group", alt.Tooltip("active_share:Q", format=".1%"),
                                               "active", "persons"])
        labels = base.mark_text(dy=-6).encode(text=alt.Text("persons:Q", format=","))
        st.altair_chart((bars + labels).properties(height=200, width=130).facet(
            column=alt.Column("rule_id:N", title=None)))
        st.caption("Share of treated and holdout persons active in the outcome window, pooled over the audiences "
                   "whose window has passed (labels: persons); uplift = treated − holdout.")
        ui.table(pooled, column_config={
            "treated_active_share": st.column_config.NumberColumn(format="%.3f"),
            "holdout_active_share": st.column_config.NumberColumn(format="%.3f"),
            "uplift": st.column_config.NumberColumn(format="%+.3f")})
    else:
        st.info("no audience has a complete outcome window yet: uplift appears once the window has passed",
                icon=ui.WAIT)
    st.markdown("**Per audience day** (`mart_intervention_outcomes`)")
    ui.table(out, width="stretch", column_config={
        "treated_active_share": st.column_config.NumberColumn(format="%.3f"),
        "holdout_active_share": st.column_config.NumberColumn(format="%.3f"),
        "uplift": st.column_config.NumberColumn(format="%+.3f")})

st.subheader("Alerts")
counts = data.alert_counts(snap, f)
if not data.has(snap, "marts.mart_alerts"):
    ui.absent("marts.mart_alerts")
elif not len(counts):
    ui.empty("alerts")
else:
    ui.table(counts)
    with st.expander("Latest alerts (`mart_alerts`)"):
        ui.person_table(data.alerts(snap, f), width="stretch")
