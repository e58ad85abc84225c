"""The hand-written SQL reference of the core marts (reference.sql, D79): the yardstick of the full dbt build.

``run_reference(warehouse, as_of)`` fills the script's placeholders from the project parameters (dbt_project.yml
``vars.ulm`` with ``ULM_PARAMS`` overrides), runs it in one DuckDB connection on the warehouse's ``raw`` schema and
returns the seconds it took and the rows of each ``ref`` table. ``python -m ulm.bench.reference WAREHOUSE AS_OF OUT``
is the bench stage (``--keep`` leaves schema ``ref`` in place; by default it is dropped after timing).
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path
from string import Template

from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.warehouse import connect

SCRIPT = Path(__file__).with_name("reference.sql")
# the ref tables and the dbt marts they stand for (tests/test_reference.py compares them)
TABLES = {"persons": "marts.dim_persons", "person_activity_daily": "marts.fct_person_activity_daily",
          "stage_intervals": "marts.fct_lifecycle_stage_history", "kpi_daily": "marts.mart_kpi_daily",
          "aarrr_funnel": "marts.mart_aarrr_funnel", "rfm": "marts.mart_rfm"}
EVENT_TYPES = ("app_open", "product_view", "content_view", "like", "comment", "favorite", "share", "live_enter",
               "community_join", "community_open", "check_in", "ugc_post", "invite_sent", "assist")


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def render(as_of: date) -> str:
    """reference.sql with its placeholders filled (as-of day, time zone, identity guards, windows)."""
    values = [f"value = {_literal(v)}" for v in (param("identity_blocked_values") or [])]
    patterns = [f"regexp_full_match(value, {_literal(p)})" for p in (param("identity_blocked_patterns") or [])]
    days = [int(n) for n in param("retention_days")]
    d = f"date {_literal(as_of.isoformat())}"
    if param("link_on_device"):
        raise NotImplementedError("reference.sql links on phone and union_id only (link_on_device: false)")
    return Template(SCRIPT.read_text()).substitute(
        as_of=d,
        tz=str(param("business_timezone")).replace("'", "''"),
        blocked=" or ".join(values + patterns) or "false",
        max_accounts=int(param("max_accounts_per_identifier")),
        repurchase_days=int(param("repurchase_window_days")),
        rfm_days=int(param("rfm_window_days")),
        churn_days=int(param("churn_inactive_days")),
        at_risk_days=int(param("at_risk_inactive_days")),
        declining_days=int(param("declining_no_purchase_days")),
        new_days=int(param("new_customer_days")),
        mature_days=int(param("mature_min_purchase_days_90d")),
        activation_days=int(param("activation_window_days")),
        monetized_days=int(param("monetized_window_days")),
        referred_days=int(param("referred_window_days")),
        retained_aggs="".join(f"bool_or(a.is_active_day and a.activity_date = p.registered_date + {n}) as d{n},\n"
                              "        " for n in days),
        retained_flags="".join(f"coalesce(d.d{n}, false) as retained_d{n},\n    " for n in days),
        retained_counts="".join(f"count(*) filter (where retained_d{n}) as retained_d{n},\n           "
                                for n in days),
        retained_columns="".join(f"case when {d} >= last_day + {n} then retained_d{n}::integer end "
                                 f"as retained_d{n},\n    " for n in days),
        retained_rates="".join(f"case when {d} >= last_day + {n} then retained_d{n} / acquired end "
                               f"as retained_d{n}_rate,\n    " for n in days),
        event_counts=",\n        ".join(f"count(*) filter (where event_type = '{t}') as n_{t}" for t in EVENT_TYPES),
        event_columns="".join(f"coalesce(n_{t}, 0)::integer as n_{t},\n    " for t in EVENT_TYPES),
    )


def run_reference(warehouse: Path, as_of: date, keep: bool = True) -> dict:
    """Build schema ``ref`` from ``raw`` as of ``as_of``: ``{"sql_s", "rows": {table: n}}``, sql_s = seconds of the
    script inside this process."""
    sql = render(as_of)
    if not Path(warehouse).exists():
        raise UlmError(f"warehouse {warehouse} does not exist; run `ulm ingest` first")
    con = connect(Path(warehouse))
    try:
        if not con.execute("select count(*) from duckdb_tables() where schema_name = 'raw' and table_name = 'users'"
                           ).fetchone()[0]:
            raise UlmError(f"warehouse {warehouse}: table raw.users missing; run `ulm ingest` first")
        t0 = time.perf_counter()
        con.execute(sql)
        seconds = time.perf_counter() - t0
        rows = {t: con.execute(f"select count(*) from ref.{t}").fetchone()[0] for t in TABLES}
        if not keep:
            con.execute("drop schema ref cascade")
    finally:
        con.close()
    return {"sql_s": round(seconds, 3), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ulm.bench.reference")
    ap.add_argument("warehouse", type=Path)
    ap.add_argument("as_of", type=date.fromisoformat)
    ap.add_argument("out", type=Path, help="JSON result file")
    ap.add_argument("--keep", action="store_true", help="leave schema ref in the warehouse")
    a = ap.parse_args(argv)
    a.out.write_text(json.dumps(run_reference(a.warehouse, a.as_of, keep=a.keep)))


if __name__ == "__main__":
    main()
