"""Community and referral: K-factor, fission ratio, invites (mart_referral); community activity and members."""
import altair as alt
import pandas as pd
import streamlit as st

from ulm.dashboard import data, ui

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("Community and referral", ctx, "date range applies; channel / platform filters apply to the member "
          "stages only")

st.subheader("Referral")
ref = data.referral_monthly(snap, f)
if not data.has(snap, "marts.mart_referral"):
    ui.absent("marts.mart_referral")
elif not len(ref):
    ui.empty("referral months")
else:
    complete = ref[ref["is_complete_month"]] if "is_complete_month" in ref else ref
    last = (complete if len(complete) else ref).iloc[-1]
    month = pd.Timestamp(last["month"]).strftime("%Y-%m")
    cols = st.columns(4)
    cols[0].metric(f"K-factor ({month})", ui.fmt_num(last["k_factor"], 3), border=True,
                   help="accepted invites per active person of the month")
    cols[1].metric(f"fission ratio ({month})", ui.fmt_pct(last["fission_ratio"]), border=True,
                   help="new persons brought by shares per share event")
    cols[2].metric("invites sent", ui.fmt_int(last["invites_sent"]), border=True)
    cols[3].metric("acceptance rate", ui.fmt_pct(last["acceptance_rate"]), border=True)
    long = ref.melt(id_vars=["month"], value_vars=["k_factor", "fission_ratio", "acceptance_rate"],
                    var_name="measure", value_name="value")
    st.altair_chart(alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("yearmonth(month):O", title=None), y=alt.Y("value:Q"), color="measure:N",
        tooltip=["month:T", "measure:N", alt.Tooltip("value:Q", format=".3f")]).properties(height=240),
        width="stretch")
    ui.table(ref, width="stretch")
tiers = data.referral_tiers(snap)
if len(tiers):
    with st.expander("Spreader tiers and KOCs (`mart_referral_tier_counts`)"):
        ui.table(tiers, width="stretch")

st.subheader("Community activity")
daily = data.community_daily(snap, f)
if not data.has(snap, "marts.mart_community_daily"):
    ui.absent("marts.mart_community_daily")
elif len(daily):
    last = daily.iloc[-1]
    cols = st.columns(4)
    cols[0].metric("members to date", ui.fmt_int(last["members_to_date"]), border=True)
    cols[1].metric("active members (day)", ui.fmt_int(last["active_persons"]), border=True)
    cols[2].metric("check-in rate", ui.fmt_pct(last["check_in_rate"]), border=True)
    cols[3].metric("UGC share", ui.fmt_pct(last["ugc_share"]), border=True)
    long = daily.melt(id_vars=["activity_date"], value_vars=["active_persons", "new_members", "check_in_persons",
                                                              "ugc_posters"], var_name="measure", value_name="persons")
    st.altair_chart(alt.Chart(long).mark_line().encode(
        x=alt.X("activity_date:T", title=None), y="persons:Q", color="measure:N",
        tooltip=["activity_date:T", "measure:N", "persons:Q"]).properties(height=240), width="stretch")
monthly = data.community_monthly(snap, f)
if len(monthly):
    with st.expander("Monthly community funnel (`mart_community_monthly`)"):
        ui.table(monthly, width="stretch")

st.subheader("Member lifecycle")
stages = data.community_stages(snap, f)
if not data.has(snap, "marts.mart_community_members"):
    ui.absent("marts.mart_community_members")
elif len(stages):
    order = ["new_member", "active_member", "core_member", "churn_warning_member"]
    c1, c2 = st.columns([3, 2])
    c1.altair_chart(alt.Chart(stages).mark_bar().encode(
        y=alt.Y("member_stage:N", sort=order, title=None), x="members:Q",
        color=alt.Color("member_stage:N", sort=order, legend=None),
        tooltip=["member_stage", "members", alt.Tooltip("avg_days_since_last_open:Q", format=".1f")],
    ).properties(height=240), width="stretch")
    c2.dataframe(stages, hide_index=True, width="stretch",
                 column_config={"avg_days_since_last_open": st.column_config.NumberColumn(format="%.1f")})
    st.caption("Community members per member stage as of the snapshot day (`mart_community_members`).")
