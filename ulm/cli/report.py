"""Human summary of a warehouse after a run: what landed, what was quarantined, headline KPIs, where things are."""
from __future__ import annotations

import duckdb
from rich.console import Console
from rich.table import Table

from ulm.core.context import RunContext
from ulm.warehouse import connect_read_only

HEADLINE_KPIS = [
    ("dau", "DAU", "{:,.0f}"), ("mau", "MAU", "{:,.0f}"), ("stickiness", "stickiness (DAU/MAU)", "{:.1%}"),
    ("gmv", "GMV (CNY, day)", "{:,.2f}"), ("aov", "AOV (CNY)", "{:,.2f}"),
    ("repurchase_rate_90d", "repurchase rate 90d", "{:.1%}"), ("share_rate_90d", "share rate 90d", "{:.1%}"),
    ("k_factor", "K-factor", "{:.3f}"), ("nps", "NPS", "{:.1f}"),
]


def _rows(con, sql: str) -> list[tuple]:
    try:
        return con.execute(sql).fetchall()
    except duckdb.Error:
        return []


def print_summary(ctx: RunContext, seconds: float | None = None) -> None:
    console = Console()
    warehouse, as_of = ctx.warehouse, ctx.require_as_of()
    con = connect_read_only(warehouse)
    try:
        counts = Table(title="warehouse contents", show_edge=False)
        counts.add_column("schema.table")
        counts.add_column("rows", justify="right")
        for schema, name in _rows(con, "select table_schema, table_name from information_schema.tables "
                                       "where table_schema in ('raw', 'marts', 'ml', 'audit') order by 1, 2"):
            n = _rows(con, f'select count(*) from "{schema}"."{name}"')[0][0]
            counts.add_row(f"{schema}.{name}", f"{n:,}")
        console.print(counts)
        q = _rows(con, "select table_name, reason_code, count(*) from raw.quarantine "
                       "where released_at is null group by all order by 1, 2")
        if q:
            qt = Table(title="quarantined rows (raw.quarantine)", show_edge=False)
            for c in ("table", "reason", "rows"):
                qt.add_column(c)
            for t, r, n in q:
                qt.add_row(t, r, f"{n:,}")
            console.print(qt)
        kpi = _rows(con, f"select * from marts.mart_kpi_daily where kpi_date = date '{as_of.isoformat()}'")
        if kpi:
            cols = [d[0] for d in con.execute("select * from marts.mart_kpi_daily limit 0").description]
            row = dict(zip(cols, kpi[0]))
            kt = Table(title=f"headline KPIs as of {as_of}", show_edge=False)
            kt.add_column("KPI")
            kt.add_column("value", justify="right")
            for col, label, fmt in HEADLINE_KPIS:
                if row.get(col) is not None:
                    kt.add_row(label, fmt.format(float(row[col])))
            console.print(kt)
        stages = _rows(con, f"select stage, persons from marts.mart_lifecycle_daily "
                            f"where stage_date = date '{as_of.isoformat()}' order by persons desc")
        if stages:
            console.print("lifecycle stages: " + ", ".join(f"{s} {n:,}" for s, n in stages))
    finally:
        con.close()
    console.print(f"\n[bold]warehouse[/bold]: {warehouse}  (query it read-only: "
                  f"duckdb.connect('{warehouse}', read_only=True))")
    for label, path in (("exports", ctx.data_dir / "exports" / as_of.isoformat()),
                        ("data docs", ctx.data_dir / "docs" / "gx" / "index.html"),
                        ("ground truth", ctx.data_dir / "truth")):
        if path.exists():
            console.print(f"[bold]{label}[/bold]: {path}")
    console.print("[bold]UIs[/bold]: `.venv/bin/ulm ui` starts Airflow and MLflow and prints their URLs")
    if seconds is not None:
        console.print(f"done in {seconds:,.0f} s")
