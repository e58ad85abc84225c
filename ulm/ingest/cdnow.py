"""CDNOW transactions -> landing contract (users + orders), loaded through the normal loader.

``CDNOW_master.txt`` (header line; customer_id, yyyymmdd, number_of_cds, dollar_value) and
``CDNOW_sample.txt`` (no header; master_customer_id, sample_customer_id, yyyymmdd, number_of_cds,
dollar_value) are whitespace separated. The mapping (defaults documented in docs/LOADING.md):

* one ``users`` row per customer: ``user_id = 'cdnow_' || customer_id`` (the master id, also for the
  sample, so both files name the same people), registered at its first purchase;
* one ``paid`` ``orders`` row per line: ``order_id = 'cdnow_<customer>_<yyyymmdd>_<n>'`` (n = position of
  the line among that customer's lines of that day), gross = paid = dollar_value, discount = refund = 0,
  scenario ``other``; ``number_of_cds`` has no contract column and is dropped;
* every timestamp is 12:00 in the business timezone on the CDNOW date (04:00 UTC for Asia/Shanghai),
  so the business day equals the CDNOW date.

The mapped rows are written as Parquet to a temporary landing folder and loaded by
:func:`ulm.ingest.loader.ingest_files`, so they pass the same validation, quarantine and audit path.
The only difference: ``min_valid_timestamp`` is lowered to the start of the CDNOW period (1997), since
the `min_valid_timestamp` floor (2015) is meant for live platform data, not this historical benchmark.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from ulm.core import contract
from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.ingest.loader import LandingFile, ingest_files
from ulm.ingest.validate import ident, lit

CDNOW_MIN_VALID_TIMESTAMP = "1997-01-01"  # first day of the CDNOW observation period
ID_PREFIX = "cdnow_"

# Documented defaults for contract columns CDNOW does not have.
USER_DEFAULTS: dict[str, str] = {
    "platform": "'content'",            # catalogue web shop: closest to content commerce
    "acquisition_channel": "'organic'",  # no acquisition data in CDNOW
    "region": "'US'",                    # CDNOW was a US retailer
    "consent_analytics": "TRUE",         # so modelling (docs/METRICS.md#machine-learning) includes these persons
    "consent_marketing": "FALSE",        # never targeted by audiences (docs/METRICS.md#interventions)
}
ORDER_DEFAULTS: dict[str, str] = {
    "status": "'paid'",
    "discount_amount": "0",
    "refund_amount": "0",
    "scenario": "'other'",
    "category": "'music_cd'",
}


def _read_lines(con: duckdb.DuckDBPyConnection, file: Path) -> int:
    """Parse the whitespace-separated file into table ``tx(rn, customer_id, day, dollar_value)``; returns #columns."""
    con.execute(
        f"CREATE TABLE lines AS SELECT string_split_regex(trim(line), '\\s+') AS p "
        f"FROM read_csv({lit(str(file))}, columns={{'line': 'VARCHAR'}}, header=false, delim='\\t', "
        f"quote='', escape='', auto_detect=false) WHERE trim(line) <> ''"
    )
    # header line (master) = first token is not a number
    widths = con.execute(
        "SELECT DISTINCT len(p) FROM lines WHERE regexp_full_match(p[1], '[0-9]+')"
    ).fetchall()
    if len(widths) != 1 or widths[0][0] not in (4, 5):
        raise UlmError(f"{file}: column (all): cdnow format: expected 4 (master) or 5 (sample) "
                       f"whitespace-separated columns, found {sorted(w[0] for w in widths)}")
    ncols = widths[0][0]
    day, usd = (2, 4) if ncols == 4 else (3, 5)
    con.execute(f"""
        CREATE TABLE tx AS
        SELECT rowid AS rn, p[1] AS customer_id, strptime(p[{day}], '%Y%m%d')::DATE AS day,
               CAST(p[{usd}] AS DECIMAL(18,2)) AS dollar_value
        FROM lines WHERE regexp_full_match(p[1], '[0-9]+')""")
    return ncols


def _select(table: str, values: dict[str, str], from_sql: str) -> str:
    """SELECT with every contract column of ``table`` (missing ones NULL, all cast to raw types)."""
    cols = [
        f"CAST({values.get(c.name, 'NULL')} AS {contract.DUCKDB_TYPES[c.type]}) AS {ident(c.name)}"
        for c in contract.TABLES[table].columns
    ]
    return f"SELECT {', '.join(cols)} {from_sql}"


def _mapped_sql() -> dict[str, str]:
    noon = (f"timezone('UTC', timezone({lit(param('business_timezone'))}, "
            f"CAST(day AS TIMESTAMP) + INTERVAL 12 HOUR))")
    orders = _select("orders", {
        **ORDER_DEFAULTS,
        "order_id": f"{lit(ID_PREFIX)} || customer_id || '_' || strftime(day, '%Y%m%d') || '_' || "
                    "row_number() OVER (PARTITION BY customer_id, day ORDER BY rn)",
        "user_id": f"{lit(ID_PREFIX)} || customer_id",
        "order_ts": noon,
        "gross_amount": "dollar_value",
        "paid_amount": "dollar_value",
    }, "FROM tx ORDER BY rn")
    users = _select("users", {
        **USER_DEFAULTS,
        "user_id": f"{lit(ID_PREFIX)} || customer_id",
        "registered_at": noon,
        "consent_updated_at": noon,
    }, "FROM (SELECT customer_id, min(day) AS day FROM tx GROUP BY customer_id) ORDER BY customer_id")
    return {"users": users, "orders": orders}


def write_cdnow_landing(file: Path, landing_dir: Path) -> list[LandingFile]:
    """Map a CDNOW file to ``landing_dir/{users,orders}/*.parquet``; returns the files in load order."""
    file = Path(file)
    if not file.is_file():
        raise UlmError(f"CDNOW file {file} does not exist")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        _read_lines(con, file)
        out = []
        for table, sql in _mapped_sql().items():
            folder = landing_dir / table
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"cdnow_{table}_{file.stem}.parquet"
            # pyarrow writes byte-identical files for identical data, so re-ingest is a no-op
            pq.write_table(con.sql(sql).to_arrow_table(), path)
            out.append(LandingFile(table, path, f"{file.name}->{table}", origin=str(file.resolve())))
        return out
    finally:
        con.close()


def ingest_cdnow(file: Path, warehouse: Path, progress: bool = True) -> dict:
    """Load a CDNOW transaction file as users + paid orders (same summary as :func:`ingest_dir`)."""
    with tempfile.TemporaryDirectory(prefix="ulm_cdnow_") as tmp:
        files = write_cdnow_landing(Path(file), Path(tmp))
        summary = ingest_files(files, Path(warehouse), progress, min_valid_timestamp=CDNOW_MIN_VALID_TIMESTAMP)
    summary["source"] = str(Path(file).resolve())
    return summary
