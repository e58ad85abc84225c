"""The analysts' dashboard (docs/DASHBOARD.md) on a serving snapshot written by the real pipeline.

Every page renders (Streamlit AppTest) without an exception and shows the marts' numbers; persons without analytics
consent appear in no page; a missing or broken snapshot is a message, not a traceback; absent tables fall back; a
new snapshot is seen at once, also while another connection of the process holds the old one; the CLI.
"""
from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from ulm.dashboard import APP, NO_SNAPSHOT, PAGES, data

pytestmark = pytest.mark.slow  # the fixture builds a warehouse through the pipeline (about a minute)

AS_OF = date(2025, 12, 31)
TITLES = {slug: title for slug, title, _ in PAGES}
_BUILT: dict[str, Path] = {}


def build_snapshot(tmp_path_factory) -> Path:
    """600 persons x 60 days generated, ingested, built and published; the serving snapshot it wrote (memoised)."""
    if "snapshot" not in _BUILT:
        from ulm.core.context import RunContext
        from ulm.generate import generate
        from ulm.ingest import ingest_dir
        from ulm.transform.serving import serving_path
        from ulm.transform.wap import build_and_publish

        base = tmp_path_factory.mktemp("dashboard")
        landing, wh, data_dir = base / "landing", base / "warehouse.duckdb", base / "data"
        generate(landing, persons=600, days=60, end_date=AS_OF, seed=5, progress=False)
        ingest_dir(landing, wh, progress=False)
        ctx = RunContext.create(as_of=AS_OF, warehouse=wh).with_(data_dir=data_dir)
        build_and_publish(ctx, progress=False)
        path = serving_path(data_dir)
        if not path.exists():  # an older publish that does not write the snapshot yet
            from ulm.transform.serving import refresh

            con = duckdb.connect(str(wh))
            try:
                refresh(con, data_dir, AS_OF, ctx.run_id)
            finally:
                con.close()
        _BUILT["snapshot"] = path
    return _BUILT["snapshot"]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    return build_snapshot(tmp_path_factory)


def sql(path: Path, query: str, params=()) -> list[tuple]:
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{path}' AS s (READ_ONLY)")
        con.execute("USE s")
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def app(path: Path | str, slug: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["ulm_snapshot"] = str(path)
    if slug:
        at.switch_page(f"views/{slug}.py")
    return at.run()


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def rendered_text(at) -> str:
    """Everything the page sent to the browser: every element's message (chart data and tables included)."""
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(parts)


def copy_of(snapshot: Path, tmp_path: Path, *statements: str, params=()) -> Path:
    """A copy of the snapshot (named like the real one) with ``statements`` applied."""
    target = tmp_path / "serving" / "serving.duckdb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(snapshot, target)
    if statements:
        con = duckdb.connect(str(target))
        try:
            for s in statements:
                con.execute(s, list(params) if "?" in s else [])
        finally:
            con.close()
    return target


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


# ------------------------------------------------------------------------------------------------ pages
@pytest.mark.parametrize("slug", [slug for slug, _, _ in PAGES])
def test_every_page_renders(snapshot, slug) -> None:
    at = app(snapshot, slug)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == TITLES[slug]
    assert any(f"as of **{AS_OF}**" in m.value for m in at.sidebar.markdown)  # the snapshot's as-of day
    run_id = sql(snapshot, "SELECT run_id FROM meta.snapshot")[0][0]
    assert any(run_id in c.value for c in at.sidebar.caption)


def test_lifecycle_stage_counts_equal_the_mart(snapshot) -> None:
    at = app(snapshot, "lifecycle")
    expected = sql(snapshot, "SELECT stage, persons FROM marts.mart_lifecycle_daily WHERE stage_date = ? "
                             "ORDER BY stage_order", [AS_OF])
    shown = metrics(at)
    assert expected and all(shown[stage] == f"{persons:,}" for stage, persons in expected)
    moves = sql(snapshot, "SELECT sum(persons) FROM marts.fct_lifecycle_transitions")[0][0]
    assert shown["transitions"] == f"{moves:,}"


def test_kpi_cards_and_scorecard_equal_the_marts(snapshot) -> None:
    at = app(snapshot, "kpis")
    dau, mau, net30, k = sql(snapshot, "SELECT dau, mau, net_revenue_30d, k_factor FROM marts.mart_kpi_daily "
                                       "WHERE kpi_date = ?", [AS_OF])[0]
    shown = metrics(at)
    assert shown["DAU"] == f"{dau:,}" and shown["MAU"] == f"{mau:,}"
    assert shown["net revenue 30d"] == f"{float(net30):,.2f}" and shown["K-factor"] == f"{k:.3f}"
    composite = sql(snapshot, "SELECT any_value(composite_index) FROM marts.mart_scorecard WHERE as_of_date = ?",
                    [AS_OF])[0][0]
    assert shown["composite index"] == f"{composite:,.1f}"
    months = sql(snapshot, "SELECT count(*) FROM marts.mart_kpi_monthly")[0][0]
    assert any(len(df.value) == months and "mau" in df.value.columns for df in at.dataframe)


def test_audience_sizes_equal_the_mart(snapshot) -> None:
    at = app(snapshot, "interventions")
    expected = sql(snapshot, "SELECT rule_id, count(*), count(*) FILTER (WHERE is_holdout) FROM "
                             "marts.mart_interventions WHERE audience_date = (SELECT max(audience_date) FROM "
                             "marts.mart_interventions) GROUP BY rule_id")
    shown = metrics(at)
    assert expected and all(shown[rule] == f"{n:,}" for rule, n, _ in expected)
    table = next(df.value for df in at.dataframe if "audience" in df.value.columns)
    by_rule = table.groupby("rule_id")[["audience", "holdout"]].sum()
    assert all(by_rule.loc[rule, "audience"] == n and by_rule.loc[rule, "holdout"] == h for rule, n, h in expected)
    outcomes = sql(snapshot, "SELECT count(*) FROM marts.mart_intervention_outcomes")[0][0]
    assert any(len(df.value) == outcomes and "uplift" in df.value.columns for df in at.dataframe)


def test_uplift_pools_complete_windows_with_counts(snapshot, tmp_path) -> None:
    done = copy_of(snapshot, tmp_path, "UPDATE marts.mart_intervention_outcomes SET is_window_complete = true, "
                                       "treated_active_persons = treated_persons // 2, holdout_active_persons = 0")
    at = app(done, "interventions")
    assert not at.exception
    pooled = next(df.value for df in at.dataframe if "audiences" in df.value.columns).set_index("rule_id")
    for rule, treated, holdout, active in sql(done, "SELECT rule_id, sum(treated_persons), sum(holdout_persons), "
                                                    "sum(treated_active_persons) FROM marts.mart_intervention_outcomes "
                                                    "GROUP BY rule_id"):
        assert pooled.loc[rule, "treated_persons"] == treated and pooled.loc[rule, "holdout_persons"] == holdout
        assert pooled.loc[rule, "uplift"] == pytest.approx(active / treated - 0.0)


def test_funnel_channels_and_referral_equal_the_marts(snapshot) -> None:
    acquired = sql(snapshot, "SELECT sum(acquired) FROM marts.mart_aarrr_funnel WHERE cohort_grain = 'month'")[0][0]
    assert metrics(app(snapshot, "acquisition"))["acquired"] == f"{acquired:,}"
    spend, new = sql(snapshot, "SELECT sum(spend), sum(new_persons) FROM marts.mart_channel_economics")[0]
    shown = metrics(app(snapshot, "channels"))
    assert shown["spend"] == f"{float(spend):,.2f}" and shown["new persons"] == f"{new:,}"
    month, k = sql(snapshot, "SELECT month, k_factor FROM marts.mart_referral WHERE is_complete_month "
                             "ORDER BY month DESC LIMIT 1")[0]
    assert metrics(app(snapshot, "community"))[f"K-factor ({month:%Y-%m})"] == f"{k:.3f}"


def test_immature_funnel_cells_are_marked(snapshot) -> None:
    immature = sql(snapshot, "SELECT count(*) FROM marts.mart_aarrr_funnel WHERE cohort_grain = 'month' "
                             "AND retained_d30_rate IS NULL")[0][0]
    assert immature > 0  # the last month of a 60-day history cannot have a D30 rate yet
    at = app(snapshot, "acquisition")
    assert "immature" in rendered_text(at)
    cells = data.funnel_cells(data.open_snapshot(snapshot), data.Filters(), "month")
    assert int(cells["retained_d30_rate"].isna().sum()) == immature


def test_models_page_without_models(snapshot) -> None:
    at = app(snapshot, "models")
    assert any("no model scored yet" in i.value for i in at.info)
    gates = sql(snapshot, "SELECT count(DISTINCT gate) FROM audit.gate_results")[0][0]
    assert any(len(df.value) >= gates and "critical_failed" in df.value.columns for df in at.dataframe)
    text = rendered_text(at)
    assert "http://localhost:5000" in text and "http://localhost:8080/dags/ulm_daily" in text


def test_sidebar_filters_apply(snapshot) -> None:
    at = app(snapshot, "acquisition")
    at.sidebar.multiselect[0].set_value(["referral"]).run()
    assert not at.exception
    acquired = sql(snapshot, "SELECT sum(acquired) FROM marts.mart_aarrr_funnel WHERE cohort_grain = 'month' "
                             "AND acquisition_channel = 'referral'")[0][0]
    assert metrics(at)["acquired"] == f"{acquired:,}"
    table = next(df.value for df in at.dataframe if "acquisition_channel" in df.value.columns)
    assert set(table["acquisition_channel"]) == {"referral"}
    start = date(2025, 12, 1)
    at.sidebar.date_input[0].set_value((start, AS_OF)).run()
    acquired = sql(snapshot, "SELECT sum(acquired) FROM marts.mart_aarrr_funnel WHERE cohort_grain = 'month' "
                             "AND acquisition_channel = 'referral' AND cohort_date >= ?", [start])[0][0]
    assert metrics(at)["acquired"] == f"{acquired:,}"


@pytest.mark.parametrize("slug", [slug for slug, _, _ in PAGES])
def test_every_control_and_a_narrow_filter_render(snapshot, slug) -> None:
    at = app(snapshot, slug)
    for i, group in enumerate(list(at.button_group)):  # grains, measures
        for option in group.options:
            at.button_group[i].set_value(option).run()
            assert not at.exception, (slug, group.key, option, [e.value for e in at.exception])
    for i, box in enumerate(list(at.selectbox)):
        for option in box.options:
            at.selectbox[i].set_value(option).run()
            assert not at.exception, (slug, option, [e.value for e in at.exception])
    at.sidebar.multiselect[0].set_value(["search"]).run()
    at.sidebar.multiselect[1].set_value(["live"]).run()
    at.sidebar.date_input[0].set_value((date(2025, 12, 20), date(2025, 12, 25))).run()
    assert not at.exception and not at.error, (slug, [e.value for e in at.exception])


# ---------------------------------------------------------------------------------------------- privacy
def _all_pages_text(path: Path) -> str:
    texts = []
    for slug, _, _ in PAGES:
        at = app(path, slug)
        assert not at.exception, (slug, [e.value for e in at.exception])
        texts.append(rendered_text(at))  # expanders' content included: AppTest renders it closed or not
    return "\n".join(texts)


def test_persons_without_analytics_consent_appear_nowhere(snapshot, tmp_path) -> None:
    top = sql(snapshot, "SELECT r.person_id FROM marts.mart_referral_persons r JOIN marts.dim_persons p "
                        "USING (person_id) WHERE p.consent_analytics ORDER BY r.spreader_rank LIMIT 1")[0][0]
    assert top in rendered_text(app(snapshot, "value"))  # shown while the person consents
    withdrawn = copy_of(snapshot, tmp_path, "UPDATE marts.dim_persons SET consent_analytics = false "
                                            "WHERE person_id = ?", params=[top])
    hidden = {r[0] for r in sql(withdrawn, "SELECT person_id FROM marts.dim_persons WHERE NOT consent_analytics")}
    in_person_marts = hidden & {r[0] for r in sql(withdrawn, "SELECT person_id FROM marts.mart_referral_persons "
                                                             "UNION SELECT person_id FROM marts.mart_interventions")}
    assert top in in_person_marts  # the marts hold them: the dashboard must leave them out
    text = _all_pages_text(withdrawn)
    assert [p for p in hidden if p in text] == []
    shown = {r[0] for r in sql(withdrawn, "SELECT r.person_id FROM marts.mart_referral_persons r JOIN "
                                          "marts.dim_persons p USING (person_id) WHERE p.consent_analytics "
                                          "ORDER BY r.spreader_rank LIMIT 5")}
    assert all(p in text for p in shown)  # consenting persons still are


def test_person_level_frames_hold_hashed_ids_only(snapshot) -> None:
    snap = data.open_snapshot(snapshot)
    frames = [data.top_spreaders(snap, data.Filters()), data.kocs(snap, data.Filters()),
              data.alerts(snap, data.Filters())]
    for frame in frames:
        assert not [c for c in frame.columns if c.endswith("user_id") or c in ("phone", "device_id", "union_id")]
        if "person_id" in frame and len(frame):
            assert frame["person_id"].dropna().str.fullmatch(r"[0-9a-f]{32,64}").all()


# ----------------------------------------------------------------------------------- snapshot handling
def test_missing_snapshot_is_a_message(tmp_path) -> None:
    at = app(tmp_path / "serving" / "serving.duckdb")
    assert not at.exception
    assert any(NO_SNAPSHOT in w.value for w in at.warning)


def test_broken_snapshot_is_a_message(tmp_path) -> None:
    broken = tmp_path / "serving.duckdb"
    broken.write_bytes(b"not a duckdb file" * 100)
    at = app(broken)
    assert not at.exception
    assert any("cannot read the serving snapshot" in e.value for e in at.error)


def test_absent_tables_fall_back(snapshot, tmp_path) -> None:
    thin = copy_of(snapshot, tmp_path, "DROP TABLE marts.mart_referral_persons", "DROP TABLE marts.mart_scorecard",
                   "DROP TABLE marts.mart_engagement_lifecycle", "DROP TABLE audit.gate_results",
                   "DROP TABLE meta.snapshot", "DROP TABLE marts.mart_cohort_retention")
    for slug, _, _ in PAGES:
        at = app(thin, slug)
        assert not at.exception, (slug, [e.value for e in at.exception])
        assert not at.error, (slug, [e.value for e in at.error])
    assert any("mart_referral_persons" in i.value for i in app(thin, "value").info)
    assert metrics(app(thin, "kpis"))["DAU"]  # as-of day taken from the KPIs without meta.snapshot


def test_a_new_snapshot_is_seen_at_once(snapshot, tmp_path) -> None:
    live = copy_of(snapshot, tmp_path)
    before = sql(live, "SELECT persons FROM marts.mart_lifecycle_daily WHERE stage_date = ? AND stage = 'new'",
                 [AS_OF])[0][0]
    at = app(live, "lifecycle")
    assert metrics(at)["new"] == f"{before:,}"
    holder = duckdb.connect(str(live), read_only=True)  # another session's connection to the old file
    try:
        new = tmp_path / "next.duckdb"
        shutil.copyfile(live, new)
        con = duckdb.connect(str(new))
        con.execute("UPDATE marts.mart_lifecycle_daily SET persons = persons + 1000 WHERE stage = 'new'")
        con.close()
        os.replace(new, live)  # what serving.refresh does
        snap = data.open_snapshot(live)
        assert data.stage_counts(snap, AS_OF).set_index("stage").loc["new", "persons"] == before + 1000
        at.run()
        assert metrics(at)["new"] == f"{before + 1000:,}"
        assert holder.execute("SELECT persons FROM marts.mart_lifecycle_daily WHERE stage_date = ? AND "
                              "stage = 'new'", [AS_OF]).fetchall()[0][0] == before  # the old reader is unaffected
    finally:
        holder.close()


def test_page_times(snapshot) -> None:
    from ulm.dashboard.bench import page_times

    times = page_times(snapshot, pages=("kpis", "value"))
    assert set(times) == {"kpis", "value"}
    assert all(t["cold"] > 0 and t["warm"] > 0 for t in times.values())


# ---------------------------------------------------------------------------------------------------- CLI
class _FakeProcess:
    commands: list[list[str]] = []

    def __init__(self, cmd, **kwargs) -> None:
        self.commands.append(cmd)

    def wait(self, timeout=None) -> int:
        return 0

    def poll(self) -> int:
        return 0


def test_cli_runs_streamlit_with_the_snapshot(snapshot, monkeypatch) -> None:
    from ulm.cli import dashboard as cli_dashboard
    from ulm.cli import main

    monkeypatch.setattr(cli_dashboard.subprocess, "Popen", _FakeProcess)
    _FakeProcess.commands.clear()
    res = CliRunner().invoke(main, ["dashboard", "--port", "8599", "--snapshot", str(snapshot)])
    assert res.exit_code == 0, res.output
    cmd = _FakeProcess.commands[-1]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP)
    flags = dict(zip(cmd[5:cmd.index("--")], cmd[6:cmd.index("--")]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8599"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1:cmd.index("--") + 3] == ["--snapshot", str(snapshot.resolve())]
    assert "auth" not in res.output
    res = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0", "--snapshot", str(snapshot)])
    assert res.exit_code == 0 and "authenticating proxy" in res.output
    assert _FakeProcess.commands[-1][_FakeProcess.commands[-1].index("--server.address") + 1] == "0.0.0.0"


def test_cli_without_a_snapshot_says_so(tmp_path, monkeypatch) -> None:
    from ulm.cli import dashboard as cli_dashboard
    from ulm.cli import main

    monkeypatch.setattr(cli_dashboard.subprocess, "Popen", _FakeProcess)
    res = CliRunner().invoke(main, ["dashboard", "--snapshot", str(tmp_path / "none.duckdb")])
    assert res.exit_code == 0 and NO_SNAPSHOT in res.output
