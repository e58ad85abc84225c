"""Landing files: ``<out_dir>/<table>/<table>_YYYYMMDD.<parquet|csv>``, one per table and business day.

Parquet keeps contract types (timestamp[us] UTC-naive, date32, decimal128(18,2), int32, bool); a column
that carries an injected ``bad_type`` defect is written as string in that one file (see defects.py).
CSV has a header row, ISO 8601 UTC timestamps (``2025-03-01T12:34:56Z``), ISO dates, plain decimals,
``true``/``false`` booleans and an empty field for null.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ulm.core.contract import TABLES

FORMATS = ("parquet", "csv")
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def relpath(table: str, day: date, fmt: str) -> str:
    """File of ``table`` for business day ``day``, relative to the landing folder (POSIX separators)."""
    return f"{table}/{table}_{day:%Y%m%d}.{fmt}"


def to_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The CSV text form of a typed column (nulls stay null and are written as empty fields)."""
    t = arr.type
    if pa.types.is_timestamp(t):
        return pc.strftime(arr.cast(pa.timestamp("s"), safe=False), format=ISO_UTC)
    if pa.types.is_string(t):
        return arr
    if pa.types.is_boolean(t):
        return pc.if_else(arr, "true", "false")
    return arr.cast(pa.string())


def clear_landing(out_dir: Path) -> int:
    """Remove landing files of a previous run (only files named like ours); returns how many."""
    removed = 0
    for table in TABLES:
        folder = out_dir / table
        if folder.is_dir():
            for f in list(folder.glob(f"{table}_*.parquet")) + list(folder.glob(f"{table}_*.csv")):
                f.unlink()
                removed += 1
    return removed


# low-cardinality string columns worth dictionary-encoding (besides enum columns)
_DICT_COLUMNS = {"category", "kol_id", "community_id", "properties", "coupon_id"}


def _parquet_options(table: str, tbl: pa.Table) -> dict:
    """Dictionaries for enum-like columns, statistics only on time columns (they dominate write cost)."""
    cols = TABLES[table].columns
    dict_cols = [c.name for c in cols if c.enum or c.name in _DICT_COLUMNS]
    stat_cols = [c.name for c in cols if c.type in ("timestamp", "date")
                 and not pa.types.is_string(tbl.schema.field(c.name).type)]
    return {"compression": "zstd", "use_dictionary": dict_cols, "write_statistics": stat_cols or False}


def write(out_dir: Path, rel: str, tbl: pa.Table, fmt: str) -> None:
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(tbl, path, **_parquet_options(rel.split("/", 1)[0], tbl))
    else:
        text = pa.table({name: to_text(tbl.column(name)) for name in tbl.column_names})
        pacsv.write_csv(text, path, write_options=pacsv.WriteOptions(include_header=True, quoting_style="needed"))
