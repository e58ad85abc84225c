"""Lifecycle: stage counts over time, inflows / outflows with reactivations, engagement lifecycle, stage mix."""
import altair as alt
import streamlit as st

from ulm.dashboard import data, ui

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("Lifecycle", ctx, "stage marts have no channel / platform: those filters apply to the stage mix only")
stages = data.stage_order(snap)

st.subheader("Persons per stage")
counts = data.stage_counts(snap, ctx.day)
if not data.has(snap, "marts.mart_lifecycle_daily"):
    ui.absent("marts.mart_lifecycle_daily")
elif len(counts):
    day = counts["stage_date"].iloc[0].date()
    st.caption(f"on {day} (`mart_lifecycle_daily`)")
    cols = st.columns(len(counts))
    for col, row in zip(cols, counts.itertuples()):
        col.metric(row.stage, ui.fmt_int(row.persons), border=True)
    daily = data.lifecycle_daily(snap, f)
    if len(daily):
        chart = alt.Chart(daily).mark_area().encode(
            x=alt.X("stage_date:T", title=None),
            y=alt.Y("persons:Q", stack="zero", title="persons"),
            color=alt.Color("stage:N", scale=ui.stage_scale(stages), sort=stages, title="stage"),
            order=alt.Order("stage_order:Q"),
            tooltip=["stage_date:T", "stage:N", "persons:Q"])
        st.altair_chart(chart.properties(height=300), width="stretch")

st.subheader("Inflows and outflows")
if not data.has(snap, "marts.fct_lifecycle_transitions"):
    ui.absent("marts.fct_lifecycle_transitions")
else:
    flows = data.stage_flows(snap, f)
    if not len(flows):
        ui.empty("stage transitions")
    else:
        order = {s: i for i, s in enumerate(stages)}
        flows = flows.sort_values("stage", key=lambda s: s.map(order).fillna(99))
        c1, c2, c3 = st.columns(3)
        c1.metric("transitions", ui.fmt_int(flows["inflow"].sum()), border=True)
        c2.metric("reactivations", ui.fmt_int(flows["reactivations"].sum()), border=True,
                  help="moves out of churned (win-back), `is_reactivation`")
        churned = flows.loc[flows["stage"] == "churned", "inflow"]
        c3.metric("moved to churned", ui.fmt_int(churned.sum() if len(churned) else 0), border=True)
        weekly = data.flows_weekly(snap, f)
        moves = weekly[weekly["flow"] != "reactivation"]
        left, right = st.columns([3, 2])
        with left:
            chart = alt.Chart(moves).mark_bar().encode(
                x=ui.day_axis("week", "week"),
                y=alt.Y("sum(persons):Q", title="persons in (+) / out (−)"),
                color=alt.Color("stage:N", scale=ui.stage_scale(stages), sort=stages),
                tooltip=["week:T", "stage:N", "flow:N", "sum(persons):Q"])
            react = weekly[weekly["flow"] == "reactivation"]
            line = alt.Chart(react).mark_line(point=True, color="black").encode(
                x=ui.day_axis("week", "week"), y="sum(persons):Q", tooltip=["week:T", alt.Tooltip("sum(persons):Q", title="reactivations")])
            st.altair_chart((chart + line).properties(height=300), width="stretch")
            st.caption("Bars: weekly moves into (+) and out of (−) each stage; line: reactivations.")
        with right:
            ui.table(flows, width="stretch")
        matrix = data.transition_matrix(snap, f)
        with st.expander("Transition matrix (from → to, persons in the range)"):
            st.altair_chart(ui.heatmap(matrix, "to_stage", "from_stage", "persons", "persons", fmt=",.0f",
                                       x_title="to", y_title="from").properties(height=260),
                            width="stretch")

st.subheader("Engagement lifecycle")
if not data.has(snap, "marts.mart_engagement_lifecycle"):
    ui.absent("marts.mart_engagement_lifecycle")
else:
    grain = st.segmented_control("grain", ["day", "week", "month"], default="week", key="eng_grain") or "week"
    eng = data.engagement_lifecycle(snap, f, grain)
    if not len(eng):
        ui.empty("engagement periods")
    else:
        eng = eng.assign(signed=eng["persons"].where(eng["status"] != "dormant", -eng["persons"]))
        statuses = list(ui.STATUS_COLORS)
        chart = alt.Chart(eng).mark_bar().encode(
            x=ui.day_axis("period_start") if grain != "day" else alt.X("period_start:T", title=None),
            y=alt.Y("signed:Q", title="persons (dormant below zero)"),
            color=alt.Color("status:N", scale=alt.Scale(domain=statuses, range=list(ui.STATUS_COLORS.values())),
                            sort=statuses),
            order=alt.Order("status:N"),
            tooltip=["period_start:T", "status:N", "persons:Q"])
        st.altair_chart(chart.properties(height=300), width="stretch")
        st.caption("New, returning and resurrecting persons of each period above zero, persons gone dormant below "
                   "(`mart_engagement_lifecycle`).")

st.subheader("Stage mix by channel")
mix = data.stage_mix_by_channel(snap, f)
if not data.has(snap, "marts.dim_persons"):
    ui.absent("marts.dim_persons")
elif len(mix):
    chart = alt.Chart(mix).mark_bar().encode(
        y=alt.Y("acquisition_channel:N", title=None),
        x=alt.X("persons:Q", stack="normalize", title="share of persons", axis=alt.Axis(format="%")),
        color=alt.Color("stage:N", scale=ui.stage_scale(stages + ["unknown"]), sort=stages),
        tooltip=["acquisition_channel:N", "stage:N", "persons:Q"])
    st.altair_chart(chart.properties(height=260), width="stretch")
    st.caption(f"Current stage (as of {ctx.as_of}) per acquisition channel (`dim_persons`); channel / platform "
               "filters apply.")
