"""Landing files -> SQL sources read in one set-based pass per table (docs/LOADING.md#one-load--one-file-one-pass-per-table).

Per file, without a transaction and without reading rows, the checks that are per-file by nature: CSV header
(encoding, delimiter, empty or repeated names; our own parse of the first line), Parquet column names (repeats,
from the footer) and a schema *signature* (Parquet: names, physical and logical types; CSV: the header). Files with
the same signature form one group, typed with one ``DESCRIBE`` and checked for schema drift per file
(:func:`ulm.ingest.validate.check_schema`), then read together: one ``read_parquet`` / ``read_csv`` over the
group's file list.

Every source row is keyed by ``_rn = _f * 2^40 + <row number in its file>`` where ``_f`` is the file's position
in the batch (load order). Ordering by ``_rn`` is therefore "file order, then row order", the order in which
per-file loads would have seen the rows; ``_rn % 2^40`` is the row number that names a quarantined row.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ulm.core import contract
from ulm.core.errors import ContractError
from ulm.ingest.files import LandingFile, first_line, is_write_failure
from ulm.ingest.validate import Rules, check_schema, ident, lit, stage_sql

log = logging.getLogger("ulm.ingest")

ROW_BITS = 40
FILE_STRIDE = 1 << ROW_BITS  # rows per file: up to 2^40; files per batch: up to 2^23
# DuckDB's multi-file readers expose these as virtual columns, unless a file has a column of that name
_VIRTUAL = ("file_index", "file_row_number")


def file_of(col: str = "_rn") -> str:
    """SQL: the batch position ``_f`` of a staged row's file."""
    return f"({col} // {FILE_STRIDE})"


def row_in_file(col: str = "_rn") -> str:
    """SQL: the row number of a staged row within its file (0-based; CSV: data line, Parquet: row)."""
    return f"({col} % {FILE_STRIDE})"


@dataclass
class SourceFile:
    """One file of a batch: its position ``f`` (load order), identity and, once inspected, its schema."""

    f: int
    lf: LandingFile
    sha256: str
    load_id: str
    signature: tuple = ()
    header: list[str] = field(default_factory=list)  # CSV: the column names of the header row
    types: dict[str, str] = field(default_factory=dict)  # source column -> DuckDB type
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.lf.label

    @property
    def source_file(self) -> str:
        return self.lf.origin or str(self.lf.path)

    @property
    def single(self) -> bool:
        """Read alone: a column name would shadow the multi-file reader's virtual columns."""
        return bool(self.signature) and self.signature[0].endswith("-single")


# --------------------------------------------------------------------------- per-file checks (no rows read)

_BOM = b"\xef\xbb\xbf"
_OTHER_DELIMITERS = (";", "\t", "|")
_CSV_WIDTH = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_CSV_LINE = re.compile(r"^Original Line: ?(.*)$", re.MULTILINE)


def _encoding_error(label: str, offset: int, byte: int) -> ContractError:
    return ContractError(f"{label}: column (none): encoding: not UTF-8 (byte 0x{byte:02x} at offset {offset})")


def _delimiter_error(label: str, found: str) -> ContractError:
    return ContractError(f"{label}: column (header): delimiter: expected ',' (found {found!r})")


def first_invalid_utf8(path: Path, chunk: int = 1 << 20) -> tuple[int, int] | None:
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


def csv_header(path: Path, label: str) -> list[str]:
    """Column names from the header row of a CSV file, checked: UTF-8, comma-delimited, non-empty, unique."""
    with open(path, "rb") as fh:
        header = next(csv.reader(_utf8_lines(fh, label)), [])
    if len(header) == 1:
        found = [d for d in _OTHER_DELIMITERS if d in header[0]]
        if found:
            raise _delimiter_error(label, found[0])
    if not header or any(not c for c in header):
        raise ContractError(f"{label}: column (header): csv header row missing or has an empty column name")
    check_unique_columns(label, header)
    return header


def check_unique_columns(label: str, names: list[str]) -> None:
    """ContractError on a repeated column name (DuckDB identifiers are case-insensitive, so is this check)."""
    seen: dict[str, str] = {}
    for name in names:
        first = seen.get(name.lower())
        if first is not None:
            same = "" if first == name else f" (same as {first}; names are case-insensitive)"
            raise ContractError(f"{label}: column {name}: duplicate column name in header{same}")
        seen[name.lower()] = name


def csv_read_error(lf: LandingFile, exc: duckdb.Error) -> ContractError | None:
    """A specific ContractError for a DuckDB CSV read failure we can explain (encoding, delimiter), else None."""
    msg = str(exc)
    if "not utf-8 encoded" in msg.lower() or "invalid unicode" in msg.lower():
        bad = first_invalid_utf8(lf.path)
        if bad:
            return _encoding_error(lf.label, *bad)
    width, line = _CSV_WIDTH.search(msg), _CSV_LINE.search(msg)
    if width and line and int(width.group(2)) == 1 and "," not in line.group(1):
        found = [d for d in _OTHER_DELIMITERS if d in line.group(1)]
        if found:
            return _delimiter_error(lf.label, found[0])
    return None


def unreadable(lf: LandingFile, exc: BaseException) -> BaseException:
    """A read failure: the file's fault (ContractError) unless the warehouse failed (returned as it is)."""
    if is_write_failure(exc):
        return exc
    if isinstance(exc, OSError):  # our own header / footer read (permissions, vanished file)
        return ContractError(f"{lf.label}: column (none): unreadable {lf.format} file: "
                             f"{exc.strerror or type(exc).__name__}")
    specific = csv_read_error(lf, exc) if lf.format == "csv" and isinstance(exc, duckdb.Error) else None
    return specific or ContractError(f"{lf.label}: column (none): unreadable {lf.format} file: {first_line(exc)}")


def inspect(sf: SourceFile) -> None:
    """Per-file checks that need no row: CSV header, repeated Parquet column names; sets the signature."""
    lf = sf.lf
    if lf.format == "csv":
        try:
            sf.header = csv_header(lf.path, lf.label)
        except OSError as exc:
            raise unreadable(lf, exc) from None
        names, sig = sf.header, ("csv", tuple(sf.header))
    else:
        try:
            schema = pq.read_metadata(lf.path).schema
            names = schema.to_arrow_schema().names
            sig = ("parquet", tuple(names), tuple((c.path, c.physical_type, str(c.logical_type),
                                                   c.max_definition_level, c.max_repetition_level) for c in schema))
        except (OSError, ValueError, pa.ArrowException):  # pyarrow cannot read it: DuckDB decides, alone
            names, sig = [], ("parquet-single", str(lf.path))
        check_unique_columns(lf.label, names)
    if any(n.lower() in _VIRTUAL for n in names) and not sig[0].endswith("-single"):
        sig = (f"{sig[0]}-single", str(lf.path))
    sf.signature = sig


def _describe(con: duckdb.DuckDBPyConnection, sf: SourceFile) -> dict[str, str]:
    if sf.lf.format == "csv":
        return {c: "VARCHAR" for c in sf.header}  # read as text, parsed per row
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(sf.lf.path))})").fetchall()
    return {r[0]: r[1] for r in rows}


def _group_key(sf: SourceFile) -> tuple:
    return (sf.signature, sf.f) if sf.single else sf.signature


def group(con: duckdb.DuckDBPyConnection, table: contract.Table, files: list[SourceFile],
          failed: dict[int, BaseException]) -> list[list[SourceFile]]:
    """Inspect, type (one DESCRIBE per signature) and drift-check the files; groups of readable files.

    A file that fails a check gets its ContractError in ``failed`` (by position) and is left out.
    """
    buckets: dict[tuple, list[SourceFile]] = {}
    for sf in files:
        try:
            inspect(sf)
        except ContractError as exc:
            failed[sf.f] = exc
            continue
        buckets.setdefault(_group_key(sf), []).append(sf)
    return _typed(con, table, list(buckets.values()), failed)


def _typed(con: duckdb.DuckDBPyConnection, table: contract.Table, buckets: list[list[SourceFile]],
           failed: dict[int, BaseException]) -> list[list[SourceFile]]:
    out = []
    for members in buckets:
        try:
            types = _describe(con, members[0])
        except duckdb.Error as exc:
            if is_write_failure(exc):
                raise
            if len(members) > 1:  # same signature, but let each file answer for itself
                out += _typed(con, table, [[sf] for sf in _alone(members)], failed)
            else:
                failed[members[0].f] = unreadable(members[0].lf, exc)
            continue
        ok = []
        for sf in members:
            try:
                sf.warnings = check_schema(sf.label, table, types)
            except ContractError as exc:
                failed[sf.f] = exc
                continue
            sf.types = types
            ok.append(sf)
        if ok:
            out.append(ok)
    return out


def _alone(members: list[SourceFile]) -> list[SourceFile]:
    """The members of a group, each marked to be read alone."""
    for sf in members:
        sf.signature = (f"{sf.signature[0].removesuffix('-single')}-single", str(sf.lf.path))
    return members


# --------------------------------------------------------------------------- multi-file sources

def _file_map(files: list[SourceFile]) -> str:
    """SQL: the batch position of the row's file, from the reader's ``file_index`` (position in the list)."""
    if all(sf.f == files[0].f + i for i, sf in enumerate(files)):
        return f"({files[0].f} + file_index)"
    return f"[{', '.join(str(sf.f) for sf in files)}][CAST(file_index AS BIGINT) + 1]"


def source_sql(con: duckdb.DuckDBPyConnection, files: list[SourceFile], tmp: str) -> str:
    """SQL exposing ``_rn`` + the columns of files that share one signature (CSV: materialized into ``tmp``,
    so its rowid is the line order of each file)."""
    paths = "[" + ", ".join(lit(str(sf.lf.path)) for sf in files) + "]"
    k = FILE_STRIDE
    if files[0].lf.format == "parquet":
        if len(files) == 1 and files[0].single:
            p = lit(str(files[0].lf.path))
            return (f"SELECT CAST({files[0].f} AS BIGINT) * {k} + file_row_number AS _rn, "
                    f"* EXCLUDE (file_row_number) FROM read_parquet({p}, file_row_number=true)")
        return (f"SELECT CAST({_file_map(files)} AS BIGINT) * {k} + file_row_number AS _rn, * "
                f"FROM read_parquet({paths})")
    # Columns from our own header parse, all VARCHAR, no sniffing: malformed values reach validation as text,
    # and a line with the wrong number of fields fails the read instead of being skipped.
    columns = "{" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in files[0].header) + "}"
    fmap = str(files[0].f) if len(files) == 1 else _file_map(files)
    con.execute(  # insertion order is kept (DuckDB's default): rowid = line order within each file
        f"CREATE TEMP TABLE {tmp} AS SELECT CAST({fmap} AS BIGINT) AS __ulm_f, * FROM read_csv({paths}, "
        f"header=true, auto_detect=false, columns={columns}, delim=',', quote='\"', escape='\"', strict_mode=true)")
    return (f"SELECT s.__ulm_f * {k} + (s.rowid - o.__first) AS _rn, s.* EXCLUDE (__ulm_f) FROM {tmp} s "
            f"JOIN (SELECT __ulm_f, min(rowid) AS __first FROM {tmp} GROUP BY ALL) o USING (__ulm_f)")


def stage(con: duckdb.DuckDBPyConnection, table: contract.Table, groups: list[list[SourceFile]], rules: Rules,
          failed: dict[int, BaseException]) -> bool:
    """Validate every group into the temp table ``_stage`` (one ``SELECT`` per group); whether any row source
    was staged. A group that cannot be read is staged file by file, so only the unreadable files fail."""
    staged = False
    queue = list(groups)
    n = 0
    while queue:
        members = queue.pop(0)
        tmp = f"_src_{n}"
        n += 1
        try:
            sql = stage_sql(table, source_sql(con, members, tmp), members[0].types, rules)
            con.execute(("INSERT INTO _stage " if staged else "CREATE TEMP TABLE _stage AS ") + sql)
            staged = True
        except duckdb.Error as exc:
            if is_write_failure(exc) or isinstance(exc, duckdb.InterruptException):
                raise
            if len(members) > 1:
                log.debug("%s .. %s: reading %d files together failed (%s); reading them one by one",
                          members[0].label, members[-1].label, len(members), first_line(exc))
                queue[:0] = [[sf] for sf in members]
            else:
                failed[members[0].f] = unreadable(members[0].lf, exc)
        finally:
            con.execute(f"DROP TABLE IF EXISTS temp.{tmp}")
    return staged


def fill_original_rows(con: duckdb.DuckDBPyConnection, files: dict[int, SourceFile]) -> None:
    """Original-row JSON for staged rows that were valid when staged but are quarantined now (conflicts, stale
    updates): read again from their files only."""
    from ulm.ingest.validate import DUPLICATE_KEY_CONFLICT, STALE_UPDATE

    late = f"_orig IS NULL AND _reason IN ({lit(DUPLICATE_KEY_CONFLICT)}, {lit(STALE_UPDATE)})"
    todo = [files[int(r[0])] for r in con.execute(f"SELECT DISTINCT {file_of()} FROM _stage WHERE {late} ORDER BY 1")
            .fetchall()]
    if not todo:
        return
    by_sig: dict[tuple, list[SourceFile]] = {}
    for sf in todo:
        by_sig.setdefault(_group_key(sf), []).append(sf)
    for members in by_sig.values():
        try:
            source = source_sql(con, members, "_src_fill")
            pack = ", ".join(f"{ident(n)} := s.{ident(n)}" for n in members[0].types)
            con.execute(f"""
                UPDATE _stage SET _orig = o.j FROM (
                  SELECT s._rn, CAST(to_json(struct_pack({pack})) AS VARCHAR) AS j FROM ({source}) s
                  WHERE s._rn IN (SELECT _rn FROM _stage WHERE {late})
                ) o WHERE _stage._rn = o._rn""")
        finally:
            con.execute("DROP TABLE IF EXISTS temp._src_fill")
