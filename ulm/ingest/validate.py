"""Set-based contract validation of one landing source (docs/METRICS.md#landing-contract, #validity-quarantine-and-reconciliation), expressed as DuckDB SQL.

Everything here builds SQL text from :mod:`ulm.core.contract`; nothing iterates over rows in Python.

* :func:`check_schema` compares the columns a file delivers with the contract and raises
  :class:`~ulm.core.errors.ContractError` on schema drift (missing required column, a source type that
  cannot represent the contract type).
* :func:`stage_sql` returns one ``SELECT`` that parses every contract column with ``TRY_CAST``
  and assigns each row its first failing reason code, in the fixed order of :data:`REASON_CODES`.

The staged relation has: ``_rn`` (the source's row key: file position * 2^40 + row in file, see
:mod:`ulm.ingest.sources`), the typed contract columns (exactly the
raw-layer types of ``contract.DUCKDB_TYPES``), ``_kh`` (key hash used for duplicate detection; the content hash
:func:`row_hash_sql` is computed where needed),
``_reason`` / ``_col`` / ``_detail`` (NULL for valid rows) and ``_orig`` (the original row as JSON,
only for rows with a reason).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ulm.core import contract
from ulm.core.contract import Column, Table
from ulm.core.errors import ContractError
from ulm.core.settings import param

# Row-level reason codes, in the order they are checked: the first failing rule wins.
REASON_CODES = (
    "missing_required",
    "bad_type",
    "unknown_enum",
    "timestamp_too_old",
    "timestamp_in_future",
    "out_of_range",
    "amount_out_of_range",
    "constraint",
    "unknown_account",
)
# Assigned by the loader after row validation (same key as an earlier row, different content).
DUPLICATE_KEY_CONFLICT = "duplicate_key_conflict"
# A users row for a known account that is not newer than its stored version (docs/METRICS.md#consent-and-attribute-changes).
STALE_UPDATE = "stale_update"
# A row of an erased person (suppression list, docs/METRICS.md#privacy): quarantined without its payload and
# not counted toward the invalid ratio (a re-sent file is not bad data).
ERASED_SUBJECT = "erased_subject"
# Late-arriving dimension: re-checked on later loads, not counted toward the invalid ratio.
ORPHAN_REASON = "unknown_account"

_INT_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}
_TS_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP_US", "DATETIME"}
_TSTZ_TYPES = {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"}


@dataclass(frozen=True)
class Rules:
    """Validity thresholds for one load (docs/METRICS.md#validity-quarantine-and-reconciliation). ``future_limit`` = load time + tolerance (UTC)."""

    min_valid_timestamp: datetime
    future_limit: datetime
    business_timezone: str

    @classmethod
    def for_load(cls, load_time: datetime, min_valid_timestamp: str | None = None) -> Rules:
        """Rules from the parameters; ``min_valid_timestamp`` overrides the param (CDNOW history)."""
        lo = min_valid_timestamp or str(param("min_valid_timestamp"))
        return cls(
            min_valid_timestamp=datetime.fromisoformat(lo),
            future_limit=load_time + timedelta(hours=float(param("future_tolerance_hours"))),
            business_timezone=str(param("business_timezone")),
        )

    @property
    def future_limit_date(self) -> date:
        """Latest acceptable business date for ``date`` columns (business day of ``future_limit``)."""
        utc = self.future_limit.replace(tzinfo=ZoneInfo("UTC"))
        return utc.astimezone(ZoneInfo(self.business_timezone)).date()


def ident(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------- schema drift

def _kind(src_type: str) -> str:
    """Classify a DuckDB source type: varchar, null, int, float, decimal, ts, tstz, date, bool, nested, other."""
    t = src_type.upper().strip('"')
    if t in ("VARCHAR", "JSON") or t.startswith("VARCHAR("):
        return "varchar"
    if t == "NULL":
        return "null"
    if t in _INT_TYPES:
        return "int"
    if t in _FLOAT_TYPES:
        return "float"
    if t.startswith("DECIMAL"):
        return "decimal"
    if t in _TS_TYPES:
        return "ts"
    if t in _TSTZ_TYPES:
        return "tstz"
    if t == "DATE":
        return "date"
    if t == "BOOLEAN":
        return "bool"
    if t.startswith(("STRUCT", "MAP")) or t.endswith("]"):
        return "nested"
    return "other"


# contract type -> source kinds that can represent it (checked per row afterwards)
_COMPATIBLE: dict[str, set[str]] = {
    "string": {"varchar", "null"},
    "json": {"varchar", "null", "nested"},
    "timestamp": {"varchar", "null", "ts", "tstz"},
    "date": {"varchar", "null", "date", "ts", "tstz"},
    "int": {"varchar", "null", "int", "float", "decimal"},
    "bool": {"varchar", "null", "bool"},
    "decimal": {"varchar", "null", "int", "float", "decimal"},
}


def check_schema(file_label: str, table: Table, src_types: dict[str, str]) -> list[str]:
    """Raise ContractError on schema drift; return warnings (unknown extra / missing optional columns)."""
    for col in table.columns:
        if col.name not in src_types:
            if col.required:
                raise ContractError(
                    f"{file_label}: column {col.name}: schema drift: required column missing from file"
                )
            continue
        kind = _kind(src_types[col.name])
        if kind not in _COMPATIBLE[col.type]:
            raise ContractError(
                f"{file_label}: column {col.name}: schema drift: file type {src_types[col.name]} "
                f"cannot represent contract type {col.type}"
            )
    warnings = []
    extra = [c for c in src_types if c not in set(table.column_names)]
    if extra:
        warnings.append(f"{file_label}: ignoring columns not in the contract: {', '.join(extra)}")
    missing = [c.name for c in table.columns if not c.required and c.name not in src_types]
    if missing:
        warnings.append(f"{file_label}: optional columns missing, loaded as NULL: {', '.join(missing)}")
    return warnings


# --------------------------------------------------------------------------- parsing

def _norm_expr(col: Column, src_types: dict[str, str]) -> str:
    """The source value with empty strings as NULL (CSV/Parquet alike); NULL when the column is absent."""
    if col.name not in src_types or _kind(src_types[col.name]) == "null":
        return "NULL::VARCHAR"
    ref = "s." + ident(col.name)
    return f"NULLIF(CAST({ref} AS VARCHAR), '')" if _kind(src_types[col.name]) == "varchar" else ref


def _typed_expr(col: Column, kind: str, v: str) -> str:
    """Parse normalized value ``v`` (of source kind ``kind``) to the raw-layer type; NULL if unparsable."""
    target = contract.DUCKDB_TYPES[col.type]
    if kind == "null":
        return f"NULL::{target}"
    if col.type == "string":
        return v
    if col.type == "json":
        return f"CAST(to_json({v}) AS VARCHAR)" if kind == "nested" else f"CASE WHEN json_valid({v}) THEN {v} END"
    if col.type == "timestamp":
        if kind == "varchar":
            return f"CAST(timezone('UTC', TRY_CAST({v} AS TIMESTAMPTZ)) AS TIMESTAMP)"
        return f"CAST(timezone('UTC', {v}) AS TIMESTAMP)" if kind == "tstz" else f"CAST({v} AS TIMESTAMP)"
    if col.type == "date":
        return f"TRY_CAST({v} AS DATE)"
    if col.type == "int":
        if kind == "int":
            return f"TRY_CAST({v} AS INTEGER)"
        d = f"TRY_CAST({v} AS DOUBLE)"  # integral values only: '3' and 3.0 pass, '3.5' is bad_type
        return f"CASE WHEN {d} = trunc({d}) THEN TRY_CAST({d} AS INTEGER) END"
    if col.type == "bool":
        return f"TRY_CAST(lower(trim({v})) AS BOOLEAN)" if kind == "varchar" else v
    if col.type == "decimal":
        return f"TRY_CAST({v} AS {target})"
    raise ValueError(f"unsupported contract type {col.type}")


# --------------------------------------------------------------------------- reason rules

def _why(code: str, column: str, text: str) -> str:
    detail = f"column {column}: {code}: {text}"
    return "{" + f"'code': {lit(code)}, 'col': {lit(column)}, 'detail': {lit(detail)}" + "}"


def _rule_column(table: Table, rule_sql: str) -> str:
    """The contract column a ROW_RULE is about: the first one named in its SQL."""
    for token in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rule_sql):
        if token in table.column_names:
            return token
    return table.column_names[0]


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _when_clauses(table: Table, rules: Rules, known_accounts_sql: str) -> list[str]:
    """``WHEN <failing condition> THEN <reason struct>`` in the fixed reason order, columns in contract order."""
    v = {c.name: ident("__v_" + c.name) for c in table.columns}
    t = {c.name: ident(c.name) for c in table.columns}
    w: list[str] = []
    for c in table.columns:
        if c.required:
            w.append(f"WHEN {v[c.name]} IS NULL THEN {_why('missing_required', c.name, 'required value is missing')}")
    for c in table.columns:
        w.append(
            f"WHEN {v[c.name]} IS NOT NULL AND {t[c.name]} IS NULL "
            f"THEN {_why('bad_type', c.name, f'value does not parse as {c.type}')}"
        )
    for c in table.columns:
        if c.enum:
            allowed = ", ".join(lit(e) for e in c.enum)
            w.append(
                f"WHEN {t[c.name]} NOT IN ({allowed}) "
                f"THEN {_why('unknown_enum', c.name, 'value not in ' + '/'.join(c.enum))}"
            )
    lo, hi = rules.min_valid_timestamp, rules.future_limit
    for c in table.columns:
        if c.type == "timestamp":
            w.append(f"WHEN {t[c.name]} < TIMESTAMP {lit(lo.isoformat(' '))} "
                     f"THEN {_why('timestamp_too_old', c.name, f'before {lo:%Y-%m-%d %H:%M:%S}')}")
        elif c.type == "date":
            w.append(f"WHEN {t[c.name]} < DATE {lit(lo.date().isoformat())} "
                     f"THEN {_why('timestamp_too_old', c.name, f'before {lo:%Y-%m-%d}')}")
    for c in table.columns:
        if c.type == "timestamp":
            w.append(f"WHEN {t[c.name]} > TIMESTAMP {lit(hi.isoformat(' '))} "
                     f"THEN {_why('timestamp_in_future', c.name, 'after load time + future tolerance')}")
        elif c.type == "date":
            w.append(f"WHEN {t[c.name]} > DATE {lit(rules.future_limit_date.isoformat())} "
                     f"THEN {_why('timestamp_in_future', c.name, 'after the business day of the load')}")
    for c in table.columns:
        if c.min_value is not None:
            w.append(f"WHEN {t[c.name]} < {_fmt_num(c.min_value)} "
                     f"THEN {_why('out_of_range', c.name, f'below minimum {_fmt_num(c.min_value)}')}")
        if c.max_value is not None:
            w.append(f"WHEN {t[c.name]} > {_fmt_num(c.max_value)} "
                     f"THEN {_why('out_of_range', c.name, f'above maximum {_fmt_num(c.max_value)}')}")
    for c in table.columns:
        if c.max_param is not None:  # money bound from a parameter: sums downstream must never overflow
            bound = _fmt_num(float(param(c.max_param)))
            w.append(f"WHEN {t[c.name]} > {bound} "
                     f"THEN {_why('amount_out_of_range', c.name, f'above {c.max_param} {bound}')}")
    for tbl, code, rule_sql in contract.ROW_RULES:
        if tbl == table.name:
            col = _rule_column(table, rule_sql)
            w.append(f"WHEN NOT ({rule_sql}) THEN {_why('constraint', col, f'{code} ({rule_sql})')}")
    for col_name, ref in table.foreign_keys.items():
        w.append(
            f"WHEN {t[col_name]} IS NOT NULL AND {t[col_name]} NOT IN ({known_accounts_sql}) "
            f"THEN {_why('unknown_account', col_name, f'no known account in {ref}')}"
        )
    return w


def row_hash_sql(table: Table, alias: str = "") -> str:
    """Content hash over the typed contract columns (identical rows hash equal, raw or staged)."""
    prefix = f"{alias}." if alias else ""
    return "hash(" + ", ".join(prefix + ident(c) for c in table.column_names) + ")"


def key_hash_sql(table: Table, alias: str = "") -> str:
    """Hash of the unique key (UBIGINT); ``raw._keys_<table>`` holds it for every loaded row."""
    prefix = f"{alias}." if alias else ""
    return "hash(" + ", ".join(prefix + ident(k) for k in table.key) + ")"


def stage_sql(
    table: Table,
    source_sql: str,
    src_types: dict[str, str],
    rules: Rules,
    known_accounts_sql: str = "SELECT user_id FROM raw.users",
) -> str:
    """One SELECT that parses and validates ``source_sql`` (which must expose ``_rn`` + source columns).

    The original row is packed to JSON only for rows with a reason (the source columns travel as plain column
    references until then), so a valid row costs its parse, its checks and its key hash.
    """
    src = list(src_types)
    orig_cols = ", ".join(f"s.{ident(n)} AS {ident(f'__o{i}')}" for i, n in enumerate(src))
    pack = ", ".join(f"{ident(n)} := {ident(f'__o{i}')}" for i, n in enumerate(src))
    norm = ", ".join(f"{_norm_expr(c, src_types)} AS {ident('__v_' + c.name)}" for c in table.columns)
    typed = ", ".join(
        f"CAST({_typed_expr(c, _kind(src_types.get(c.name, 'NULL')), ident('__v_' + c.name))} "
        f"AS {contract.DUCKDB_TYPES[c.type]}) AS {ident(c.name)}"
        for c in table.columns
    )
    cols = ", ".join(ident(c) for c in table.column_names)
    whens = "\n      ".join(_when_clauses(table, rules, known_accounts_sql))
    return f"""
WITH n AS (
  SELECT s._rn, {orig_cols}, {norm} FROM ({source_sql}) s
), t AS (
  SELECT n.*, {typed} FROM n
), r AS (
  SELECT t.*, CASE
      {whens}
    END AS __why FROM t
)
SELECT _rn, {cols}, {key_hash_sql(table)} AS _kh,
       __why.code AS _reason, __why.col AS _col, __why.detail AS _detail,
       CASE WHEN __why IS NOT NULL THEN CAST(to_json(struct_pack({pack})) AS VARCHAR) END AS _orig
FROM r"""


def json_source_sql(table: Table, json_col: str, from_sql: str, rn_col: str) -> str:
    """A source relation (all VARCHAR) rebuilt from original-row JSON, e.g. quarantined orphans."""
    cols = ", ".join(
        f"json_extract_string({json_col}, {lit('$.' + ident(c))}) AS {ident(c)}" for c in table.column_names
    )
    return f"SELECT {rn_col} AS _rn, {cols} FROM {from_sql}"
