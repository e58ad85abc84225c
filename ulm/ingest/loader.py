"""Landing files -> DuckDB schema ``raw`` (docs/METRICS.md#landing-contract, #validity-quarantine-and-reconciliation). See docs/LOADING.md for the full behaviour.

One load = one file, in its own transaction:

1. skip the file when its sha256 is already in ``raw._ingested_files`` (idempotent re-ingest);
2. check the file (CSV encoding and delimiter, repeated column names) and the schema (drift) ->
   :class:`ContractError`, the load is rolled back and audited as ``failed``;
3. release earlier orphans of the table whose account now exists (late-arriving dimension);
4. stage the file with :func:`ulm.ingest.validate.stage_sql` (set-based parse + reason codes);
5. mark duplicates of a unique key (identical -> counted, different content -> quarantined);
6. enforce ``max_invalid_ratio``; insert accepted rows, quarantine rows, audit row, registry row; commit.

A failed load raises its own error (never a failing ROLLBACK's); a warehouse I/O error (disk full) becomes a
one-line :class:`UlmError` naming the file.

``load_id`` = ``<table>:<file name>:<sha256[:12]>`` (deterministic: same content under the same name ->
same id). Release-only loads (no new file for a table, but orphans became loadable) use
``<table>:release:<UTC timestamp>``.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from ulm.core import contract
from ulm.core.errors import ContractError, UlmError
from ulm.core.settings import param
from ulm.ingest import suppression, versions
from ulm.ingest.validate import (
    DUPLICATE_KEY_CONFLICT,
    ERASED_SUBJECT,
    ORPHAN_REASON,
    STALE_UPDATE,
    Rules,
    check_schema,
    ident,
    json_source_sql,
    key_hash_sql,
    lit,
    row_hash_sql,
    stage_sql,
)
from ulm.warehouse import connect, ensure_raw_schema, transaction

log = logging.getLogger("ulm.ingest")

FORMATS = {".parquet": "parquet", ".csv": "csv"}
_STAMP = re.compile(r"(?:^|_)(\d{8})(?:_|$)")
_DUPLICATE = versions.DUPLICATE  # internal outcome in the stage table: counted, neither loaded nor quarantined
_NOT_INVALID = (_DUPLICATE, ORPHAN_REASON, ERASED_SUBJECT)  # outcomes that do not count toward max_invalid_ratio
_TEMP_TABLES = ("_src", "_stage", "_pending", "_blocked", "_release", "_existing", "_dupkeys", "_dd", "_ref",
                *suppression.TEMP_TABLES)


@dataclass(frozen=True)
class LandingFile:
    """One landing file to load into ``raw.<table>``; ``label`` names it in messages and load ids."""

    table: str
    path: Path
    label: str
    origin: str | None = None  # recorded as _source_file when the file is derived (e.g. CDNOW mapping)

    @property
    def format(self) -> str:
        return FORMATS[self.path.suffix.lower()]


@dataclass
class LoadResult:
    """Outcome of one load (mirrors its ``raw.load_audit`` row)."""

    table: str
    load_id: str
    source_file: str
    sha256: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_released: int = 0
    rows_erased: int = 0  # of rows_quarantined: rows of erased persons (erased_subject)
    rows_new_version: int = 0  # of rows_accepted: new versions of known accounts (users updates)
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- key-hash index

def key_index(table: str) -> str:
    """Name of the key-hash index of a raw table (one UBIGINT per loaded row)."""
    return f"raw._keys_{table}"


def ensure_key_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``raw._keys_<table>`` for every raw table (backfilled from ``raw.<table>`` the first time).

    Duplicate detection probes this narrow integer column instead of scanning every key string of a
    large raw table; only on a hit are the raw rows themselves read. Rows deleted from raw (erasure)
    leave stale hashes behind, which only cost a raw lookup that finds nothing.
    """
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw'").fetchall()}
    for table in contract.TABLES:
        if f"_keys_{table}" not in have:
            con.execute(f"CREATE TABLE {key_index(table)} (key_hash UBIGINT NOT NULL)")
            con.execute(f"INSERT INTO {key_index(table)} SELECT {key_hash_sql(contract.TABLES[table])} FROM raw.{table}")


# --------------------------------------------------------------------------- discovery

def table_order() -> list[str]:
    """Contract tables with referenced tables (users) before the tables that reference them."""
    referenced = {ref.split(".")[0] for t in contract.TABLES.values() for ref in t.foreign_keys.values()}
    return [t for t in contract.TABLES if t in referenced] + [t for t in contract.TABLES if t not in referenced]


def file_stamp(path: Path) -> date | None:
    """The ``YYYYMMDD`` stamp in a file name (``events_20250301.parquet``), or None."""
    m = _STAMP.search(path.stem)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def discover(landing_dir: Path, until: date | None = None) -> tuple[list[LandingFile], list[str]]:
    """Landing files in load order (dependency order of tables, then file name) and warnings."""
    landing_dir = Path(landing_dir)
    if not landing_dir.is_dir():
        raise UlmError(f"landing directory {landing_dir} does not exist")
    warnings = [
        f"{p}: not a contract table folder, ignored"
        for p in sorted(landing_dir.iterdir())
        if not (p.is_dir() and p.name in contract.TABLES) and not p.name.startswith(".")
    ]
    files: list[LandingFile] = []
    seen = 0  # landing files found, before the ``until`` filter
    for table in table_order():
        folder = landing_dir / table
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir(), key=lambda q: q.name):
            if p.name.startswith("."):
                continue
            if not p.is_file() or p.suffix.lower() not in FORMATS:
                warnings.append(f"{p}: not a .parquet or .csv file, ignored")
                continue
            seen += 1
            stamp = file_stamp(p)
            if until is not None and stamp is not None and stamp > until:
                continue
            files.append(LandingFile(table, p.resolve(), p.name))
    if not seen:
        warnings.append(f"landing directory {landing_dir} holds no landing files")
    return files, warnings


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def utc_now() -> datetime:
    """Load time: naive UTC, like every raw timestamp."""
    return datetime.now(UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------- sources

_BOM = b"\xef\xbb\xbf"
_OTHER_DELIMITERS = (";", "\t", "|")
_CSV_WIDTH = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_CSV_LINE = re.compile(r"^Original Line: ?(.*)$", re.MULTILINE)


def _encoding_error(label: str, offset: int, byte: int) -> ContractError:
    return ContractError(f"{label}: column (none): encoding: not UTF-8 (byte 0x{byte:02x} at offset {offset})")


def _delimiter_error(label: str, found: str) -> ContractError:
    return ContractError(f"{label}: column (header): delimiter: expected ',' (found {found!r})")


def _first_invalid_utf8(path: Path, chunk: int = 1 << 20) -> tuple[int, int] | None:
    """(file offset, byte value) of the first byte that is not valid UTF-8, or None (reads the file once)."""
    base, carry = 0, b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            data = carry + block
            try:
                data.decode("utf-8")
                base, carry = base + len(data), b""
            except UnicodeDecodeError as exc:
                if block and exc.reason == "unexpected end of data":  # a sequence split by the chunk edge
                    base, carry = base + exc.start, data[exc.start:]
                else:
                    return base + exc.start, data[exc.start]
            if not block:
                return None


def _utf8_lines(fh, label: str):
    """Lines of a binary file as text (BOM dropped); a non-UTF-8 byte is a ContractError with its offset."""
    offset = 0
    for raw_line in fh:
        start = len(_BOM) if offset == 0 and raw_line.startswith(_BOM) else 0
        try:
            yield raw_line[start:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _encoding_error(label, offset + start + exc.start, raw_line[start + exc.start]) from None
        offset += len(raw_line)


def _csv_header(path: Path, label: str) -> list[str]:
    """Column names from the header row of a CSV file, checked: UTF-8, comma-delimited, non-empty, unique."""
    with open(path, "rb") as fh:
        header = next(csv.reader(_utf8_lines(fh, label)), [])
    if len(header) == 1:
        found = [d for d in _OTHER_DELIMITERS if d in header[0]]
        if found:
            raise _delimiter_error(label, found[0])
    if not header or any(not c for c in header):
        raise ContractError(f"{label}: column (header): csv header row missing or has an empty column name")
    _check_unique_columns(label, header)
    return header


def _check_unique_columns(label: str, names: list[str]) -> None:
    """ContractError on a repeated column name (DuckDB identifiers are case-insensitive, so is this check)."""
    seen: dict[str, str] = {}
    for name in names:
        first = seen.get(name.lower())
        if first is not None:
            same = "" if first == name else f" (same as {first}; names are case-insensitive)"
            raise ContractError(f"{label}: column {name}: duplicate column name in header{same}")
        seen[name.lower()] = name


def _csv_read_error(lf: LandingFile, exc: duckdb.Error) -> ContractError | None:
    """A specific ContractError for a DuckDB CSV read failure we can explain (encoding, delimiter), else None."""
    msg = str(exc)
    if "not utf-8 encoded" in msg.lower() or "invalid unicode" in msg.lower():
        bad = _first_invalid_utf8(lf.path)
        if bad:
            return _encoding_error(lf.label, *bad)
    width, line = _CSV_WIDTH.search(msg), _CSV_LINE.search(msg)
    if width and line and int(width.group(2)) == 1 and "," not in line.group(1):
        found = [d for d in _OTHER_DELIMITERS if d in line.group(1)]
        if found:
            return _delimiter_error(lf.label, found[0])
    return None


def _open_source(con: duckdb.DuckDBPyConnection, lf: LandingFile) -> tuple[str, dict[str, str]]:
    """SQL exposing ``_rn`` + the file's columns, and the file's column types (before ``_rn``)."""
    p = lit(str(lf.path))
    if lf.format == "parquet":
        reader = f"read_parquet({p})"
        source = f"SELECT file_row_number AS _rn, * EXCLUDE (file_row_number) FROM read_parquet({p}, file_row_number=true)"
    else:
        # Columns from our own header parse, all VARCHAR, no sniffing: malformed values reach validation
        # as text, and a line with the wrong number of fields fails the read instead of being skipped.
        # Materialized so rowid is the line order of the file.
        reader = "_src"
        header = _csv_header(lf.path, lf.label)
        columns = "{" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in header) + "}"
        try:
            con.execute(
                f"CREATE TEMP TABLE _src AS SELECT * FROM read_csv({p}, header=true, auto_detect=false, "
                f"columns={columns}, delim=',', quote='\"', escape='\"', strict_mode=true)"
            )
        except duckdb.Error as exc:
            raise _csv_read_error(lf, exc) or exc
        source = "SELECT rowid AS _rn, * FROM _src"
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()}
    if lf.format == "parquet":  # DuckDB renames repeated names (region -> region_1): check the file's own names
        try:
            names = pq.read_schema(lf.path).names
        except (OSError, ValueError):  # pyarrow cannot read what DuckDB could: nothing more to check
            names = []
        _check_unique_columns(lf.label, names)
    return source, types


def _key_join(table: contract.Table, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{ident(k)} = {b}.{ident(k)}" for k in table.key)


def _keys(table: contract.Table, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + ident(k) for k in table.key)


# --------------------------------------------------------------------------- orphans

def _pending_count(con: duckdb.DuckDBPyConnection, table_name: str) -> int:
    """Unreleased orphans (rows whose only fault was an unknown account) of a table."""
    return con.execute(
        "SELECT count(*) FROM raw.quarantine WHERE table_name = ? AND reason_code = ? AND released_at IS NULL",
        [table_name, ORPHAN_REASON],
    ).fetchone()[0]


def _stage_pending(con: duckdb.DuckDBPyConnection, table: contract.Table, rules: Rules) -> bool:
    """Re-validate the table's unreleased orphans into ``_pending`` (``_rn`` = quarantine_id)."""
    if not table.foreign_keys or not _pending_count(con, table.name):
        return False
    where = (
        f"raw.quarantine WHERE table_name = {lit(table.name)} "
        f"AND reason_code = {lit(ORPHAN_REASON)} AND released_at IS NULL"
    )
    source = json_source_sql(table, "original_row", where, "quarantine_id")
    types = {c: "VARCHAR" for c in table.column_names}
    con.execute(f"CREATE TEMP TABLE _pending AS {stage_sql(table, source, types, rules)}")
    return True


def _release_orphans(
    con: duckdb.DuckDBPyConnection, table: contract.Table, load_id: str, rules: Rules, now: datetime
) -> tuple[int, bool]:
    """Move orphans whose account now exists into ``raw.<table>``.

    Returns (rows released, whether ``_pending`` / ``_release`` were staged: any orphans at all).
    """
    if not _stage_pending(con, table, rules):
        return 0, False
    # never release over a key that is already loaded: probe the key-hash index (inner join, the
    # small pending side is the build side), confirm exact keys against raw only on a hash hit
    con.execute(
        f"CREATE TEMP TABLE _blocked AS SELECT DISTINCT p._rn FROM _pending p "
        f"JOIN {key_index(table.name)} k ON p._kh = k.key_hash WHERE p._reason IS NULL"
    )
    if con.execute("SELECT count(*) FROM _blocked").fetchone()[0]:
        con.execute(
            f"DELETE FROM _blocked WHERE _rn NOT IN (SELECT p._rn FROM _pending p "
            f"SEMI JOIN raw.{table.name} r ON {_key_join(table, 'p', 'r')})"
        )
    con.execute(
        "CREATE TEMP TABLE _release AS SELECT * FROM _pending "
        "WHERE _reason IS NULL AND _rn NOT IN (SELECT _rn FROM _blocked)"
    )
    n = con.execute("SELECT count(*) FROM _release").fetchone()[0]
    if n:
        cols = ", ".join("p." + ident(c) for c in table.column_names)
        con.execute(
            f"INSERT INTO raw.{table.name} SELECT {cols}, q.load_id, {lit(now.isoformat(' '))}::TIMESTAMP, "
            f"q.source_file FROM _release p JOIN raw.quarantine q ON q.quarantine_id = p._rn"
        )
        con.execute(f"INSERT INTO {key_index(table.name)} SELECT _kh FROM _release")
        con.execute(
            f"UPDATE raw.quarantine SET released_at = {lit(now.isoformat(' '))}::TIMESTAMP, "
            f"released_load_id = {lit(load_id)} WHERE quarantine_id IN (SELECT _rn FROM _release)"
        )
    return int(n), True


# --------------------------------------------------------------------------- duplicates

def _mark_duplicates(con: duckdb.DuckDBPyConnection, table: contract.Table, has_pending: bool) -> None:
    """Flag staged rows whose key already exists (raw, pending orphans, an earlier row of the file).

    The reference row of a key is the existing one, else the first occurrence in the file. Another row
    with identical content is a duplicate (counted); with different content it is quarantined as
    ``duplicate_key_conflict``. Only rows that would otherwise load (valid or orphan) take part.
    """
    cand = f"(_reason IS NULL OR _reason = {lit(ORPHAN_REASON)})"
    keys, keys_s = _keys(table), _keys(table, "s")
    # probe the narrow key-hash index first; read raw rows only for keys that may already be loaded
    hits = con.execute(
        f"SELECT count(*) FROM {key_index(table.name)} k "
        f"JOIN (SELECT _kh FROM _stage WHERE {cand}) s ON k.key_hash = s._kh"
    ).fetchone()[0]
    parts = [f"SELECT {keys}, NULL::UBIGINT AS _h FROM _stage WHERE FALSE"]
    if hits:
        parts.append(
            f"SELECT {_keys(table, 'r')}, {row_hash_sql(table, 'r')} FROM raw.{table.name} r "
            f"SEMI JOIN (SELECT {keys} FROM _stage WHERE {cand}) s ON {_key_join(table, 'r', 's')}"
        )
    if has_pending:
        parts.append(f"SELECT {_keys(table, 'p')}, p._h FROM _pending p WHERE p._rn NOT IN (SELECT _rn FROM _release)")
    con.execute(
        f"CREATE TEMP TABLE _existing AS SELECT {keys}, any_value(_h) AS _h "
        f"FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL"
    )
    # candidate keys by key hash (cheap integer grouping); exact keys decide below
    con.execute(
        f"CREATE TEMP TABLE _dupkeys AS SELECT _kh FROM _stage WHERE {cand} GROUP BY _kh HAVING count(*) > 1 "
        f"UNION SELECT {key_hash_sql(table)} FROM _existing"
    )
    con.execute(f"""
        CREATE TEMP TABLE _dd AS
        WITH c AS (
          SELECT s._rn, {keys_s}, s._h FROM _stage s
          SEMI JOIN _dupkeys k ON s._kh = k._kh WHERE {cand}
        )
        SELECT c._rn,
               CASE WHEN e._h IS NOT NULL THEN c._h = e._h
                    ELSE c._h = arg_min(c._h, c._rn) OVER w END AS same,
               e._h IS NOT NULL OR c._rn > min(c._rn) OVER w AS is_dup
        FROM c LEFT JOIN _existing e ON {_key_join(table, 'c', 'e')}
        WINDOW w AS (PARTITION BY {_keys(table, 'c')})""")
    key0 = table.key[0]
    conflict = f"column {key0}: {DUPLICATE_KEY_CONFLICT}: key already loaded with different content"
    con.execute(f"""
        UPDATE _stage SET
          _reason = CASE WHEN d.same THEN {lit(_DUPLICATE)} ELSE {lit(DUPLICATE_KEY_CONFLICT)} END,
          _col = {lit(key0)},
          _detail = CASE WHEN d.same THEN NULL ELSE {lit(conflict)} END
        FROM _dd d WHERE _stage._rn = d._rn AND d.is_dup""")


def _fill_original_rows(con: duckdb.DuckDBPyConnection, source: str, src_types: dict[str, str]) -> None:
    """Original-row JSON for conflict and stale rows (valid at staging, so not captured then)."""
    late = f"_orig IS NULL AND _reason IN ({lit(DUPLICATE_KEY_CONFLICT)}, {lit(STALE_UPDATE)})"
    if not con.execute(f"SELECT count(*) FROM _stage WHERE {late}").fetchone()[0]:
        return
    pack = ", ".join(f"{ident(n)} := s.{ident(n)}" for n in src_types)
    con.execute(f"""
        UPDATE _stage SET _orig = o.j FROM (
          SELECT s._rn, CAST(to_json(struct_pack({pack})) AS VARCHAR) AS j FROM ({source}) s
          WHERE s._rn IN (SELECT _rn FROM _stage WHERE {late})
        ) o WHERE _stage._rn = o._rn""")


# --------------------------------------------------------------------------- one load

def _counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int, int, int]:
    """rows read, accepted, quarantined, duplicate, invalid (quarantined minus orphans and erased subjects)."""
    row = con.execute(f"""
        SELECT count(*), count(*) FILTER (_reason IS NULL),
               count(*) FILTER (_reason <> {lit(_DUPLICATE)}),
               count(*) FILTER (_reason = {lit(_DUPLICATE)}),
               count(*) FILTER (_reason NOT IN ({", ".join(lit(x) for x in _NOT_INVALID)}))
        FROM _stage""").fetchone()
    return tuple(int(x) for x in row)  # type: ignore[return-value]


def _check_invalid_ratio(con: duckdb.DuckDBPyConnection, label: str, read: int, invalid: int) -> None:
    """ContractError naming the dominant column and rule when invalid rows exceed ``max_invalid_ratio``."""
    limit = float(param("max_invalid_ratio"))
    if read == 0 or invalid / read <= limit:
        return
    col, reason, n = con.execute(f"""
        SELECT _col, _reason, count(*) AS n FROM _stage
        WHERE _reason NOT IN ({", ".join(lit(x) for x in _NOT_INVALID)})
        GROUP BY ALL ORDER BY n DESC, _col, _reason LIMIT 1""").fetchone()
    raise ContractError(
        f"{label}: column {col}: {reason}: invalid ratio {invalid / read:.2%} ({invalid} of {read} rows; "
        f"{n} {reason} in {col}) exceeds max_invalid_ratio {limit:.2%}"
    )


def _write_rows(con: duckdb.DuckDBPyConnection, table: contract.Table, load_id: str, source_file: str, now: datetime) -> None:
    ts = f"{lit(now.isoformat(' '))}::TIMESTAMP"
    cols = ", ".join(ident(c) for c in table.column_names)
    con.execute(
        f"INSERT INTO raw.{table.name} SELECT {cols}, {lit(load_id)}, {ts}, {lit(source_file)} "
        f"FROM _stage WHERE _reason IS NULL"
    )
    con.execute(f"INSERT INTO {key_index(table.name)} SELECT _kh FROM _stage WHERE _reason IS NULL")
    con.execute(f"""
        INSERT INTO raw.quarantine
        SELECT {lit(load_id + ':')} || CAST(_rn AS VARCHAR), {lit(table.name)}, _orig, _reason, _detail,
               {lit(load_id)}, {lit(source_file)}, {ts}, NULL, NULL
        FROM _stage WHERE _reason <> {lit(_DUPLICATE)}""")


def _audit(con: duckdb.DuckDBPyConnection, r: LoadResult, status: str, message: str | None,
           started: datetime) -> None:
    con.execute(
        "INSERT INTO raw.load_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [r.load_id, r.table, r.source_file, r.sha256, r.rows_read, r.rows_accepted, r.rows_quarantined,
         r.rows_duplicate, r.rows_released, status, message, started, utc_now()],
    )


def _drop_temps(con: duckdb.DuckDBPyConnection) -> None:
    for t in _TEMP_TABLES:
        con.execute(f"DROP TABLE IF EXISTS temp.{t}")


def _ingested_index(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    """(table, sha256) -> load_id of every file already ingested: one query per run instead of one per file."""
    rows = con.execute("SELECT table_name, file_sha256, load_id FROM raw._ingested_files").fetchall()
    return {(t, sha): load_id for t, sha, load_id in rows}


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _is_write_failure(exc: BaseException) -> bool:
    """DuckDB could not write the warehouse, its WAL or its temp spill (disk full, I/O error, invalidated)."""
    if not isinstance(exc, duckdb.Error):
        return False
    msg = str(exc).lower()
    return isinstance(exc, duckdb.FatalException) or any(
        s in msg for s in ("no space left", "could not write", "disk is full", "failed to create checkpoint"))


def _unreadable(lf: LandingFile, exc: duckdb.Error) -> BaseException:
    """A DuckDB error while reading the source: the file's fault (ContractError) unless the warehouse failed."""
    if _is_write_failure(exc):
        return exc
    return ContractError(f"{lf.label}: column (none): unreadable {lf.format} file: {_first_line(exc)}")


def _load_error(label: str, exc: BaseException) -> BaseException:
    """The error a failed load raises: a warehouse I/O failure becomes a one-line UlmError naming ``label``
    (the file being loaded); anything else is raised as it is."""
    if isinstance(exc, duckdb.IOException) or _is_write_failure(exc):
        detail = re.sub(r"^(?:FATAL |IO |TransactionContext )?Error: ", "", _first_line(exc))
        detail = re.sub(r"^Failed(?: to commit)?: ", "", detail)
        return UlmError(f"{label}: load failed, warehouse I/O error: {detail} (free disk space, then re-run)")
    return exc


def _run_load(con: duckdb.DuckDBPyConnection, lf: LandingFile, r: LoadResult, now: datetime,
              min_valid_timestamp: str | None) -> None:
    """The body of one file load (inside the caller's transaction)."""
    table = contract.TABLES[lf.table]
    try:
        source, src_types = _open_source(con, lf)
    except duckdb.Error as exc:
        raise _unreadable(lf, exc) from None
    except OSError as exc:  # our own header read (permissions, vanished file)
        raise ContractError(f"{lf.label}: column (none): unreadable {lf.format} file: "
                            f"{exc.strerror or type(exc).__name__}") from None
    r.warnings = check_schema(lf.label, table, src_types)
    rules = Rules.for_load(now, min_valid_timestamp)
    r.rows_released, has_pending = _release_orphans(con, table, r.load_id, rules, now)
    try:
        con.execute(f"CREATE TEMP TABLE _stage AS {stage_sql(table, source, src_types, rules)}")
    except duckdb.Error as exc:
        raise _unreadable(lf, exc) from None
    r.rows_erased = suppression.apply(con, table, now)
    if table.version_column:
        versions.mark_versions(con, table, key_index(table.name))
        r.rows_new_version = versions.new_versions(con, table)
    else:
        _mark_duplicates(con, table, has_pending)
    read, r.rows_accepted, r.rows_quarantined, r.rows_duplicate, invalid = _counts(con)
    r.rows_read = read
    _check_invalid_ratio(con, lf.label, read, invalid)
    _fill_original_rows(con, source, src_types)
    _write_rows(con, table, r.load_id, r.source_file, now)
    con.execute("INSERT INTO raw._ingested_files VALUES (?, ?, ?, ?, ?)",
                [lf.table, r.sha256, r.source_file, r.load_id, now])


def load_file(con: duckdb.DuckDBPyConnection, lf: LandingFile, min_valid_timestamp: str | None = None,
              ingested: dict[tuple[str, str], str] | None = None) -> LoadResult:
    """Load one landing file in one transaction (see module docstring); skip it if already ingested.

    ``ingested``: the caller's :func:`_ingested_index` (kept up to date here); read from the warehouse when None.
    """
    t0, started = time.perf_counter(), utc_now()
    sha = sha256_file(lf.path)
    r = LoadResult(lf.table, f"{lf.table}:{lf.label}:{sha[:12]}", lf.origin or str(lf.path), sha)
    if ingested is None:
        ingested = _ingested_index(con)
    previous = ingested.get((lf.table, sha))
    if previous:
        r.load_id, r.skipped = previous, True
        return r
    try:
        with transaction(con):
            _run_load(con, lf, r, started, min_valid_timestamp)
            notes = [*r.warnings]
            if r.rows_new_version:
                notes.append(f"{r.rows_new_version} row(s) are new versions of known accounts")
            if r.rows_erased:
                notes.append(f"{r.rows_erased} row(s) of erased persons quarantined (erased_subject)")
            _audit(con, r, "ok", "; ".join(notes) or None, started)
            _drop_temps(con)
        ingested[(lf.table, sha)] = r.load_id  # a copy of the same file later in this run is skipped too
    except BaseException as exc:
        # The load's own error is what propagates: cleanup and the failed-load audit row are best effort
        # (after a disk-full / I/O error the database may refuse every further write).
        error = _load_error(lf.label, exc)
        message = _first_line(error)
        try:
            _drop_temps(con)
        except duckdb.Error as drop_exc:
            log.debug("%s: dropping temp tables failed: %s", lf.label, _first_line(drop_exc))
        try:
            _audit(con, LoadResult(lf.table, r.load_id, r.source_file, sha), "failed", message, started)
        except duckdb.Error as audit_exc:
            log.warning("%s: the failed load could not be recorded in raw.load_audit (%s); the error was: %s",
                        lf.label, _first_line(audit_exc), message)
        if error is exc:
            raise
        raise error from exc
    r.seconds = time.perf_counter() - t0
    return r


def release_only(con: duckdb.DuckDBPyConnection, table_name: str, min_valid_timestamp: str | None = None) -> LoadResult | None:
    """A load without a file: release the table's orphans whose account arrived; audited when any moved."""
    table = contract.TABLES[table_name]
    if not table.foreign_keys:
        return None
    if not _pending_count(con, table_name):
        return None
    now = utc_now()
    r = LoadResult(table_name, f"{table_name}:release:{now:%Y%m%dT%H%M%S}", "", "")
    try:
        with transaction(con):
            r.rows_released, _ = _release_orphans(con, table, r.load_id, Rules.for_load(now, min_valid_timestamp), now)
            if r.rows_released:
                _audit(con, r, "ok", "released late-arriving rows", now)
            _drop_temps(con)
    except BaseException as exc:
        error = _load_error(f"{table_name} (release of late-arriving rows)", exc)
        try:
            _drop_temps(con)
        except duckdb.Error as drop_exc:
            log.debug("%s: dropping temp tables failed: %s", table_name, _first_line(drop_exc))
        if error is exc:
            raise
        raise error from exc
    return r if r.rows_released else None


# --------------------------------------------------------------------------- many files

def _empty_summary() -> dict:
    return {"files": 0, "files_skipped": 0, "rows_read": 0, "rows_accepted": 0, "rows_quarantined": 0,
            "rows_duplicate": 0, "rows_released": 0, "rows_erased": 0, "rows_new_version": 0, "load_ids": [],
            "seconds": 0.0}


def _add(summary: dict, r: LoadResult) -> None:
    if r.skipped:
        summary["files_skipped"] += 1
        return
    if r.source_file:
        summary["files"] += 1
    for k in ("rows_read", "rows_accepted", "rows_quarantined", "rows_duplicate", "rows_released", "rows_erased",
              "rows_new_version"):
        summary[k] += getattr(r, k)
    summary["load_ids"].append(r.load_id)
    summary["seconds"] += r.seconds


def _progress(enabled: bool, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("ingest {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=not enabled, transient=False)
    return progress, progress.add_task("", total=total)


def ingest_files(files: list[LandingFile], warehouse: Path, progress: bool = True,
                 min_valid_timestamp: str | None = None, warnings: list[str] | None = None) -> dict:
    """Load files (already in load order) into one warehouse opened once; returns the summary."""
    t0 = time.perf_counter()
    warnings = list(warnings or [])
    for w in warnings:
        log.warning(w)
    tables = {t: _empty_summary() for t in table_order()}
    con = connect(warehouse)
    try:
        try:
            ensure_raw_schema(con)
            ensure_key_indexes(con)
        except duckdb.Error as exc:
            error = _load_error(f"warehouse {warehouse}", exc)
            if error is exc:
                raise
            raise error from exc
        bar, task = _progress(progress, len(files))
        ingested = _ingested_index(con)
        with bar:
            for lf in files:
                bar.update(task, description=f"{lf.table}/{lf.label}")
                r = load_file(con, lf, min_valid_timestamp, ingested)
                for w in r.warnings:
                    log.warning(w)
                _add(tables[lf.table], r)
                bar.advance(task)
        for name, s in tables.items():
            if not s["files"]:
                released = release_only(con, name, min_valid_timestamp)
                if released:
                    _add(s, released)
    finally:
        try:
            con.close()
        except duckdb.Error as exc:  # an invalidated database (fatal I/O error): the load's error is raised
            log.debug("closing the warehouse failed: %s", _first_line(exc))
    for name, s in tables.items():
        if s["files"] or s["files_skipped"] or s["rows_released"]:
            log.info("%s: %d file(s) (%d already ingested), read %d, accepted %d, quarantined %d, "
                     "duplicates %d, released %d in %.1fs", name, s["files"], s["files_skipped"], s["rows_read"],
                     s["rows_accepted"], s["rows_quarantined"], s["rows_duplicate"], s["rows_released"], s["seconds"])
    return {"warehouse": str(warehouse), "tables": tables, "warnings": warnings,
            "seconds": round(time.perf_counter() - t0, 3)}


def ingest_dir(landing_dir: Path, warehouse: Path, until: date | None = None, progress: bool = True) -> dict:
    """Ingest every landing file under ``landing_dir/<table>/`` (stamped files only up to ``until``).

    Returns ``{"warehouse", "seconds", "warnings", "tables": {table: {files, files_skipped, rows_read,
    rows_accepted, rows_quarantined, rows_duplicate, rows_released, load_ids, seconds}}}``.
    Raises ContractError (schema drift, invalid ratio) or UlmError (warehouse locked, no landing dir).
    """
    files, warnings = discover(Path(landing_dir), until)
    return ingest_files(files, Path(warehouse), progress, warnings=warnings)
