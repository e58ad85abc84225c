"""Models and quality: champion versions and scores, fairness ratios, drift PSI, gate results, links."""
import altair as alt
import streamlit as st

from ulm.core.settings import param
from ulm.dashboard import data, ui

ctx = ui.page_context()
snap = ctx.snap
ui.header("Models and quality", ctx, "filters do not apply (latest model and gate results)")
st.markdown(f"[Open the MLflow UI]({ctx.mlflow_url}) (runs, metrics, registered versions) · "
            f"[Open the Airflow UI]({ctx.airflow_url}) (DAG runs, task logs)")

st.subheader("Champion models")
champ = data.champions(snap)
if not len(champ):
    st.info("no model scored yet: `ulm train` then `ulm score` (or `make demo`) write `ml.scores`", icon=ui.INFO)
else:
    last = champ.iloc[0]
    cols = st.columns(4)
    cols[0].metric("scored on", str(last["score_date"])[:10], border=True)
    cols[1].metric("churn model", f"v{last.get('churn_model_version', '?')}", border=True)
    cols[2].metric("LTV model", f"v{last.get('ltv_model_version', '?')}", border=True)
    cols[3].metric("persons scored", ui.fmt_int(last["persons_scored"]), border=True)
    ui.table(champ, width="stretch")
    st.caption("Versions of `models:/ulm_churn@champion` and `models:/ulm_ltv@champion` that wrote `ml.scores`.")
for name in ("model_metrics", "models"):
    extra = data.ml_table(snap, name)
    if len(extra):
        with st.expander(f"`ml.{name}`"):
            ui.table(extra, width="stretch")

st.subheader("Fairness")
fair = data.fairness_ratios(snap)
if not len(fair):
    st.info("no fairness report in this snapshot (written by `ulm train`)", icon=ui.INFO)
else:
    minimum = float(param("fairness_min_disparate_impact"))
    st.altair_chart(ui.bar_with_rule(fair.assign(subject=fair["task"] + " / " + fair["attribute"])
                                     .dropna(subset=["error_ratio"]), "subject", "error_ratio", minimum,
                                     "min/max ratio across groups", color="#1a9850", label="gate needs ≥")
                    .properties(height=240), width="stretch")
    st.caption(f"Equal opportunity: min/max ratio across groups of the TPR (churn) or mean LTV / MAE (LTV), gated "
               f"groups only; the gate needs ≥ {minimum:g} (`fairness_min_disparate_impact`).")
    ui.table(fair, width="stretch")
    with st.expander("Per group"):
        ui.table(data.fairness_groups(snap), width="stretch")

st.subheader("Drift")
dr = data.drift(snap)
if not len(dr):
    st.info("no drift report in this snapshot (written by `ulm train` and `ulm score`)", icon=ui.INFO)
else:
    alert = float(param("drift_psi_alert"))
    top = dr.head(20).assign(subject=lambda d: (d["task"] + " · " if "task" in d else "") + d["feature"]
                             + (" (" + d["context"] + ")" if "context" in d else ""))
    bars = alt.Chart(top).mark_bar().encode(
        y=alt.Y("subject:N", sort="-x", title=None, axis=alt.Axis(labelLimit=300)), x=alt.X("psi:Q", title="PSI"),
        color=alt.condition(alt.datum.psi > alert, alt.value("#d73027"), alt.value("#4575b4")),
        tooltip=[c for c in ("task", "context", "feature") if c in top] + [alt.Tooltip("psi:Q", format=".4f")])
    rule = alt.Chart({"values": [{"t": alert}]}).mark_rule(strokeDash=[6, 4]).encode(x="t:Q")
    st.altair_chart((bars + rule).properties(height=max(200, 26 * len(top))), width="stretch")
    st.caption(f"Population stability index of the latest report per task and context; alert above {alert:g} "
               "(`drift_psi_alert`).")
    alerts = data.ml_alerts(snap)
    if len(alerts):
        ui.table(alerts, width="stretch")

st.subheader("Quality gates")
gates = data.gate_summary(snap)
if not data.has(snap, "audit.gate_results"):
    ui.absent("audit.gate_results")
elif not len(gates):
    ui.empty("gate results")
else:
    failed = int(gates["critical_failed"].sum())
    st.markdown(f"Last run of each gate: **{int(gates['checks'].sum())} checks**, "
                f"**{int(gates['failed'].sum())} failed** ({failed} critical).")
    ui.table(gates, width="stretch")
    fails = data.gate_failures(snap)
    if len(fails):
        with st.expander(f"Failed checks ({len(fails)})"):
            ui.table(fails, width="stretch")
            st.caption("Sample values of unexpected rows are not shown here (they may be identifiers).")
log = data.publish_log(snap)
if len(log):
    with st.expander("Publish log (`audit.publish_log`)"):
        ui.table(log, width="stretch")
