"""Score coverage (docs/ML.md#score-coverage): dbt's int_score_coverage / dim_persons.unscored_reason name why a person
has no score, checked with real dbt runs on a copy of the CDNOW warehouse against an independent pandas reading of
the same rules.
"""
from __future__ import annotations

import shutil
from datetime import date

import duckdb
import pandas as pd
import pytest

from ulm.core.context import RunContext
from ulm.transform.dbt import run_dbt

AS_OF = date(1997, 9, 30)  # the marts' as-of day of the session fixture
LAST_RUN, OLDER_RUN = date(1997, 6, 30), date(1997, 5, 31)
MODELS = "int_persons int_scores_latest int_score_coverage"


def _build(wh) -> pd.DataFrame:
    run_dbt(RunContext.create(as_of=AS_OF, warehouse=wh), "run", select=MODELS, progress=False)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("select * from intermediate.int_score_coverage order by person_id").df()
    finally:
        con.close()


def _q(con, sql: str, params=None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _prepare_scores(wh) -> dict[str, set[str]]:
    """Withdraw consent of 3 active persons, move 3 registrations after the last run, score the rest of the
    population on LAST_RUN except 4, and one inactive person on an older day. Returns the chosen persons."""
    with duckdb.connect(str(wh)) as con:
        window = _q(con, """
            select distinct i.person_id, i.user_id from intermediate.int_person_daily_activity as a
            join intermediate.int_identity as i using (person_id)
            where a.is_active_day and a.activity_date > ?::date - 90 and a.activity_date <= ?
            order by i.person_id""", [LAST_RUN, LAST_RUN])
        inactive = _q(con, """
            select person_id from intermediate.int_identity except
            select person_id from intermediate.int_person_daily_activity
            where is_active_day and activity_date > ?::date - 90 and activity_date <= ? order by 1""",
                      [LAST_RUN, LAST_RUN])["person_id"]
        users = window["user_id"].tolist()
        no_consent, later = users[:3], users[3:6]
        con.execute("update staging.stg_users set consent_analytics = false where user_id in ?", [no_consent])
        con.execute("update staging.stg_users set registered_at = timestamp '1997-07-15 04:00:00', "
                    "registered_date = date '1997-07-15' where user_id in ?", [later])
        population = window["person_id"].iloc[6:].tolist()
        left_out, scored = population[:4], population[4:]
        rows = [(p, LAST_RUN) for p in scored] + [(inactive.iloc[0], OLDER_RUN)]
        con.executemany("insert into ml.scores (person_id, score_date, churn_probability, predicted_ltv_365, "
                        "churn_model_version, ltv_model_version) values (?, ?, 0.5, 10, '1', '1')", rows)
        # scored on LAST_RUN, then withdrew analytics consent: the score must not outlive the consent
        withdrawn = scored.pop(0)
        con.execute("update staging.stg_users set consent_analytics = false where user_id in ?",
                    [window.loc[window["person_id"] == withdrawn, "user_id"].tolist()])
    person = dict(zip(window["user_id"], window["person_id"]))
    return {"no_consent": {person[u] for u in no_consent}, "later": {person[u] for u in later},
            "left_out": set(left_out), "scored": set(scored) | {inactive.iloc[0]}, "old": {inactive.iloc[0]},
            "withdrawn": {withdrawn}}


@pytest.fixture(scope="module")
def coverage(cdnow_sample_warehouse, tmp_path_factory):
    wh = tmp_path_factory.mktemp("coverage") / "wh.duckdb"
    shutil.copy(cdnow_sample_warehouse, wh)
    before = _build(wh)  # ml.scores is empty: no scoring run yet
    chosen = _prepare_scores(wh)
    return before, _build(wh).set_index("person_id"), chosen


def test_no_scoring_run_yet(coverage):
    before, _, _ = coverage
    assert len(before) == 2357 and set(before["unscored_reason"]) == {"no_scoring_run"}
    assert before["last_score_date"].isna().all()


def test_each_unscored_person_has_the_first_matching_reason(coverage):
    _, after, chosen = coverage
    reason = after["unscored_reason"]
    assert (after["last_score_date"] == pd.Timestamp(LAST_RUN)).all()
    assert reason[reason.index.isin(chosen["scored"])].isna().all()  # the older-day score counts too
    assert reason.isna().sum() == len(chosen["scored"])
    assert set(reason[reason.index.isin(chosen["no_consent"])]) == {"no_analytics_consent"}
    assert set(reason[reason.index.isin(chosen["later"])]) == {"registered_after_scoring"}
    assert set(reason[reason.index.isin(chosen["left_out"])]) == {"changed_since_scoring"}
    rest = reason[~reason.index.isin(set().union(*chosen.values()))]
    assert len(rest) > 1000 and set(rest) == {"inactive"}  # no active day in the 90 days up to the last run
    counts = reason.value_counts(dropna=False)
    assert set(reason[reason.index.isin(chosen["withdrawn"])]) == {"no_analytics_consent"}
    assert counts["no_analytics_consent"] == 4 and counts["registered_after_scoring"] == 3
    assert counts["changed_since_scoring"] == 4 and counts.sum() == 2357
