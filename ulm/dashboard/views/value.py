"""Value: RFM segment grid, value / LTV / social tiers, CLV inputs, top spreaders and KOCs (person-level)."""
import altair as alt
import streamlit as st

from ulm.dashboard import data, ui

ctx = ui.page_context()
snap, f = ctx.snap, ctx.filters
ui.header("Value", ctx, "channel / platform filters apply (through `dim_persons`); the date range does not "
          "(these marts are as of the snapshot day)")

st.subheader("RFM segments")
if not data.has(snap, "marts.mart_rfm"):
    ui.absent("marts.mart_rfm")
else:
    grid = data.rfm_grid(snap, f)
    segments = data.rfm_segments(snap, f)
    if not len(grid):
        ui.empty("purchasers")
    else:
        left, right = st.columns([3, 2])
        with left:
            base = alt.Chart(grid).encode(x=alt.X("f_score:O", title="frequency score"),
                                          y=alt.Y("r_score:O", sort="descending", title="recency score"))
            rect = base.mark_rect(stroke="white").encode(
                color=alt.Color("rfm_segment:N", title="segment", scale=alt.Scale(scheme="tableau10")),
                tooltip=["rfm_segment:N", "segments:N", "r_score:O", "f_score:O", "persons:Q",
                         alt.Tooltip("avg_monetary:Q", format=",.2f")])
            text = base.mark_text(fontSize=11).encode(text="persons:Q")
            st.altair_chart((rect + text).properties(height=320), width="stretch")
            st.caption("Persons per recency × frequency score; colour = the cell's main segment (`mart_rfm`; "
                       "segments also use the monetary score).")
        with right:
            ui.table(segments, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.1f")
                                        for c in ("avg_recency_days", "avg_frequency", "avg_monetary", "monetary")})

st.subheader("Value, LTV and social tiers")
tiers = data.value_tiers(snap, f)
if not data.has(snap, "marts.dim_persons"):
    ui.absent("marts.dim_persons")
elif len(tiers):
    types = list(dict.fromkeys(tiers["tier_type"]))
    for col, t in zip(st.columns(len(types)), types):
        part = tiers[tiers["tier_type"] == t]
        col.markdown(f"**{t.replace('_', ' ')}**")
        col.altair_chart(alt.Chart(part).mark_bar().encode(
            y=alt.Y("tier:N", sort="-x", title=None), x=alt.X("persons:Q"),
            tooltip=["tier:N", "persons:Q", alt.Tooltip("avg_realized_ltv:Q", format=",.2f"),
                     alt.Tooltip("avg_predicted_ltv_365:Q", format=",.2f")]).properties(height=160), width="stretch")
    with st.expander("Tier table (mean realized and predicted 365-day LTV)"):
        ui.table(tiers, width="stretch")

st.subheader("Purchase frequency (CLV inputs)")
clv = data.clv_frequency(snap, f)
if not data.has(snap, "marts.mart_clv_summary"):
    ui.absent("marts.mart_clv_summary")
elif len(clv):
    c1, c2 = st.columns([2, 3])
    c1.dataframe(clv, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.1f")
                                for c in ("avg_order_value", "avg_recency_days")})
    c2.altair_chart(alt.Chart(clv).mark_bar().encode(x=alt.X("repeat_purchases:N", title="repeat purchases"),
                                                     y="persons:Q", tooltip=list(clv.columns)).properties(height=200),
                    width="stretch")
    st.caption("Repeat purchases per person with the mean value of a repeat order (`mart_clv_summary`, the BG/NBD + "
               "Gamma-Gamma inputs).")

st.subheader("Top spreaders")
spreaders = data.top_spreaders(snap, f)
if not data.has(snap, "marts.mart_referral_persons"):
    ui.absent("marts.mart_referral_persons")
elif not len(spreaders):
    ui.empty("spreaders")
else:
    ui.person_table(spreaders, width="stretch")

st.subheader("KOCs (key opinion consumers)")
koc = data.kocs(snap, f)
if not len(koc):
    st.info("no KOC among the consenting persons in this snapshot", icon=ui.INFO)
else:
    ui.person_table(koc, width="stretch")
