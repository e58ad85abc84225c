"""Versioned landing tables (docs/METRICS.md#consent-and-attribute-changes): a ``users`` row for a known account.

Set-based, over the staged rows ``_stage`` of one batch round (see :mod:`ulm.ingest.batch`: the files of a round
share no key, so "the file" below is the one file that carries the key). For every staged row that is otherwise
valid and whose key is already stored or repeated in the file:

* identical content to a stored version or to an earlier row of the file -> ``duplicate`` (counted, not loaded);
* a column outside ``Table.mutable`` differs from the account's stored row (or, for a new account, from its first
  row in the file) -> ``duplicate_key_conflict``, the detail names the first such column;
* a version (``Table.version_column``) that is not newer than the newest stored version, or equal to an earlier
  row of the file with other content -> ``stale_update``;
* otherwise -> a new version: loaded (``raw.users`` keeps every version; ``stg_user_versions`` is the history).
"""
from __future__ import annotations

import duckdb

from ulm.core import contract
from ulm.ingest.sources import file_of
from ulm.ingest.validate import DUPLICATE_KEY_CONFLICT, STALE_UPDATE, ident, lit, row_hash_sql

DUPLICATE = "duplicate"  # the loader's internal outcome: counted, neither loaded nor quarantined


def fixed_columns(table: contract.Table) -> list[str]:
    """Columns that may not change between versions (all but ``mutable``)."""
    return [c for c in table.column_names if c not in table.mutable]


def mark_versions(con: duckdb.DuckDBPyConnection, table: contract.Table, key_index: str) -> None:
    """Classify staged rows of a versioned table against stored versions and each other (module docstring)."""
    key = ident(table.key[0])  # versioned tables have a one-column key (users.user_id)
    version = ident(table.version_column or "")
    fixed = fixed_columns(table)
    fixed_hash = "hash(" + ", ".join(ident(c) for c in fixed) + ")"
    hits = con.execute(f"SELECT count(*) FROM {key_index} k JOIN (SELECT _kh FROM _stage WHERE _reason IS NULL) s "
                       f"ON k.key_hash = s._kh").fetchone()[0]
    cols = ", ".join(ident(c) for c in table.column_names)
    existing = (f"SELECT {cols}, {row_hash_sql(table, 'r')} AS _h FROM raw.{table.name} r "
                f"SEMI JOIN (SELECT {key} FROM _stage WHERE _reason IS NULL) s ON r.{key} = s.{key}") if hits else \
               f"SELECT {cols}, NULL::UBIGINT AS _h FROM _stage WHERE FALSE"
    con.execute(f"CREATE TEMP TABLE _existing AS {existing}")
    # the reference row of a key: its first stored version, else its first row in this file
    con.execute(f"""
        CREATE TEMP TABLE _ref AS
        SELECT {key}, {", ".join(f"arg_min({ident(c)}, _o) AS {ident(c)}" for c in fixed)},
               max({version}) FILTER (_stored) AS _v_max, bool_or(_stored) AS _stored
        FROM (
          SELECT {cols}, true AS _stored, row_number() OVER () AS _o FROM _existing
          UNION ALL
          SELECT {cols}, false, _rn FROM _stage s
          WHERE _reason IS NULL AND {key} NOT IN (SELECT {key} FROM _existing)
        ) GROUP BY {key}""")
    first_diff = "CASE " + " ".join(
        f"WHEN c.{ident(col)} IS DISTINCT FROM f.{ident(col)} THEN {lit(col)}" for col in fixed) + " END"
    con.execute(f"""
        CREATE TEMP TABLE _dd AS
        WITH c AS (
          SELECT s._rn, s.{key}, s._h, s.{version} AS _v, {fixed_hash} AS _fh,
                 {", ".join("s." + ident(col) for col in fixed)},
                 s._h IN (SELECT e._h FROM _existing e WHERE e.{key} = s.{key})
                   OR row_number() OVER (PARTITION BY s.{key}, s._h ORDER BY s._rn) > 1 AS is_dup
          FROM (SELECT *, {row_hash_sql(table)} AS _h FROM _stage) s
          WHERE s._reason IS NULL
            AND (s.{key} IN (SELECT {key} FROM _existing)
                 OR s.{key} IN (SELECT {key} FROM _stage WHERE _reason IS NULL GROUP BY ALL HAVING count(*) > 1))
        ), f AS (
          SELECT r.*, {fixed_hash} AS _fh FROM _ref r
        ), d AS (
          SELECT c._rn, c.is_dup, {first_diff} AS changed, f._stored, f._v_max, c._v,
                 row_number() OVER (PARTITION BY c.{key}, c.is_dup, c._v ORDER BY c._rn) AS same_version_rank,
                 c._fh = f._fh AS same_fixed
          FROM c JOIN f ON c.{key} = f.{key}
        )
        SELECT _rn,
               CASE WHEN is_dup THEN {lit(DUPLICATE)}
                    WHEN NOT same_fixed THEN {lit(DUPLICATE_KEY_CONFLICT)}
                    WHEN _stored AND (_v IS NULL OR _v <= _v_max) THEN {lit(STALE_UPDATE)}
                    WHEN same_version_rank > 1 THEN {lit(STALE_UPDATE)}
               END AS outcome,
               changed
        FROM d""")
    v_name = table.version_column
    con.execute(f"""
        UPDATE _stage SET
          _reason = d.outcome,
          _col = CASE d.outcome WHEN {lit(DUPLICATE_KEY_CONFLICT)} THEN coalesce(d.changed, {lit(table.key[0])})
                                WHEN {lit(STALE_UPDATE)} THEN {lit(v_name)} ELSE {lit(table.key[0])} END,
          _detail = CASE d.outcome
            WHEN {lit(DUPLICATE_KEY_CONFLICT)} THEN 'column ' || coalesce(d.changed, {lit(table.key[0])})
                 || ': {DUPLICATE_KEY_CONFLICT}: known {table.key[0]} with a different value in a column that may not change'
            WHEN {lit(STALE_UPDATE)} THEN 'column {v_name}: {STALE_UPDATE}: not newer than the stored version of this '
                 || {lit(table.key[0])}
          END
        FROM _dd d WHERE _stage._rn = d._rn AND d.outcome IS NOT NULL""")


def new_versions_by_file(con: duckdb.DuckDBPyConnection, table: contract.Table) -> dict[int, int]:
    """Per file of the batch: rows that add a version to an already stored key (reported in its load audit)."""
    key = ident(table.key[0])
    return {int(f): int(n) for f, n in con.execute(
        f"SELECT {file_of()}, count(*) FROM _stage WHERE _reason IS NULL AND {key} IN "
        f"(SELECT {key} FROM _existing) GROUP BY 1").fetchall()}
