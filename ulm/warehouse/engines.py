"""Cross-engine equality (issue #15): the same dbt project built on two targets gives the same tables.

:func:`compare_tables` reads one relation from a DuckDB connection and from PostgreSQL, sorts both on every column
(the non-float columns first, so a float difference below the tolerance cannot reorder rows) and compares cell by
cell: integers, strings, dates, timestamps, booleans and decimals (money) exactly, floats (rates) to ``rel_tol``
relative. A value that is an exact number on one engine and a float on the other (``avg`` of a decimal is a double
on DuckDB and a numeric on PostgreSQL) is compared with the float tolerance.
"""
from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

REL_TOL = 1e-9


def _is_float(v: Any) -> bool:
    return isinstance(v, float)


def _sort_key(row: tuple, float_cols: set[int]) -> tuple:
    exact = tuple((v is None, _norm(v)) for i, v in enumerate(row) if i not in float_cols)
    approx = tuple((v is None, round(float(v), 6) if v is not None else 0.0) for i, v in enumerate(row)
                   if i in float_cols)
    return exact + approx


def _norm(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    return str(v)


def values_equal(a: Any, b: Any, rel_tol: float = REL_TOL) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _is_float(a) or _is_float(b):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=rel_tol, abs_tol=1e-12)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b) and type(a) is type(b)
    if isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)):
        return Decimal(a) == Decimal(b)
    if isinstance(a, datetime) or isinstance(b, datetime):
        return a == b
    if isinstance(a, date) and isinstance(b, date):
        return a == b
    if isinstance(a, (str, int, Decimal, date)) and type(a) is not type(b):
        return str(a) == str(b)
    return a == b


def compare_rows(name: str, cols: list[str], left: list[tuple], right: list[tuple], rel_tol: float = REL_TOL,
                 max_report: int = 5) -> list[str]:
    """Differences between two row lists of one table (empty when equal); at most ``max_report`` cell lines."""
    if len(left) != len(right):
        return [f"{name}: {len(left)} rows vs {len(right)} rows"]
    float_cols = {i for i in range(len(cols)) if any(_is_float(r[i]) for r in left[:1000] + right[:1000])}
    a = sorted(left, key=lambda r: _sort_key(r, float_cols))
    b = sorted(right, key=lambda r: _sort_key(r, float_cols))
    out: list[str] = []
    for ra, rb in zip(a, b, strict=True):
        for i, c in enumerate(cols):
            if not values_equal(ra[i], rb[i], rel_tol):
                out.append(f"{name}.{c}: {ra[i]!r} vs {rb[i]!r} (row {dict(zip(cols, ra, strict=True))})")
                if len(out) >= max_report:
                    return out
    return out


def duckdb_tables(con: Any, schema: str) -> list[str]:
    return [r[0] for r in con.execute("select table_name from duckdb_tables() where database_name = "
                                      "current_database() and schema_name = ? order by 1", [schema]).fetchall()]


def compare_schema(duck: Any, pg_cur: Any, schema: str, rel_tol: float = REL_TOL,
                   skip: tuple[str, ...] = ()) -> tuple[dict[str, int], list[str]]:
    """Compare every DuckDB table of ``schema`` with the Postgres relation of the same name, column by column
    (DuckDB's column order; columns starting with '_' are load lineage and skipped). Returns ({table: rows},
    differences)."""
    counts: dict[str, int] = {}
    diffs: list[str] = []
    pg_cur.execute("select table_name from information_schema.tables where table_schema = %s", (schema,))
    pg_tables = {r[0] for r in pg_cur.fetchall()}
    for table in duckdb_tables(duck, schema):
        if table in skip:
            continue
        if table not in pg_tables:
            diffs.append(f"{schema}.{table}: missing on PostgreSQL")
            continue
        cols = [r[0] for r in duck.execute(
            "select column_name from duckdb_columns() where database_name = current_database() and schema_name = ? "
            "and table_name = ? order by column_index", [schema, table]).fetchall() if not r[0].startswith("_")]
        col_list = ", ".join(f'"{c}"' for c in cols)
        left = duck.execute(f'select {col_list} from "{schema}"."{table}"').fetchall()
        pg_cur.execute(f'select {col_list} from "{schema}"."{table}"')
        right = pg_cur.fetchall()
        counts[table] = len(left)
        diffs += compare_rows(f"{schema}.{table}", cols, left, right, rel_tol)
    return counts, diffs
