"""Landing side of lasting erasure (docs/METRICS.md#privacy, docs/PRIVACY.md#erasure).

``raw.erased_subjects`` holds keyed hashes (HMAC-SHA256 with the suppression key) of every identifier of every
erased person: user ids, phones, union ids. Inside a load, on the staged rows ``_stage`` (:func:`apply` for one
file; a batch calls the steps: :func:`build` hashes the distinct values once, :func:`mark` per round,
:func:`record_links` once the files of the round are certain to load, see :mod:`ulm.ingest.batch`):

* a row whose owner column (``Table.owner_columns``: ``user_id``, the inviter of an invite) is a suppressed user id,
  or a ``users`` row whose phone or union id is suppressed, is quarantined as ``erased_subject`` with its payload
  dropped (``original_row`` NULL) whatever else is wrong with it; it counts as quarantined, not as invalid;
* a ``users`` row caught by its phone or union id is a new account of the erased person: its user id joins the
  suppression list, so its events, orders and invites are caught too, and quarantined rows of that account that
  were waiting for it (late arrivals) lose their payload;
* a reference to an erased account from someone else's row (``Table.reference_columns``: referrer, invitee) is
  set to NULL, as erasure does to stored rows.

Only distinct values are hashed, and only when the list is not empty: a warehouse without erasures pays nothing.
"""
from __future__ import annotations

from datetime import datetime

import duckdb

from ulm.core import contract, settings
from ulm.ingest.validate import ERASED_SUBJECT, ident, lit
from ulm.privacy import keys
from ulm.privacy.hashing import UDF_NAME, register_udf

# users columns whose (hashed) value identifies an erased person: kind in raw.erased_subjects
IDENTIFIER_KINDS = {"phone": "phone", "union_id": "union_id"}
USER_KIND = "user_id"
TEMP_TABLES = ("_sv",)


def active(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM raw.erased_subjects").fetchall()[0][0])


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Check the suppression key against the warehouse and register the hash UDF with it."""
    keys.verify_key(con, "suppression")
    register_udf(con, settings.suppression_key().encode("utf-8"))


def _identifiers(table: contract.Table) -> list[str]:
    return [c for c in IDENTIFIER_KINDS if table.version_column and c in table.column_names]


def _hit(col: str) -> str:
    kind = IDENTIFIER_KINDS.get(col, USER_KIND)
    return f"{ident(col)} IN (SELECT v FROM _sv WHERE kind = {lit(kind)})"


def build(con: duckdb.DuckDBPyConnection, table: contract.Table) -> tuple[bool, bool]:
    """Hash the distinct identifiers of every staged row once into ``_sv`` (the values on the suppression list).

    Returns (any staged value is suppressed, a ``users`` row is linked to an erased person by phone or union id).
    """
    identifiers = _identifiers(table)
    columns = [*table.owner_columns, *table.reference_columns, *identifiers]
    if not columns or not active(con):
        return False, False
    prepare(con)
    parts = [f"SELECT DISTINCT {ident(c)} AS v, {lit(IDENTIFIER_KINDS.get(c, USER_KIND))} AS kind FROM _stage "
             f"WHERE {ident(c)} IS NOT NULL" for c in columns]
    con.execute(f"""
        CREATE TEMP TABLE _sv AS
        SELECT h.v, h.kind FROM (SELECT v, kind, {UDF_NAME}(v) AS subject_hash FROM ({" UNION ".join(parts)})) h
        SEMI JOIN raw.erased_subjects e ON e.subject_hash = h.subject_hash AND e.kind = h.kind""")
    hits, linked = con.execute(f"SELECT count(*), count(*) FILTER (kind <> {lit(USER_KIND)}) FROM _sv").fetchone()
    return bool(hits), bool(linked)


def mark(con: duckdb.DuckDBPyConnection, table: contract.Table) -> int:
    """Quarantine staged rows of erased persons, null references to them (module docstring); needs :func:`build`.
    Returns how many rows were quarantined."""
    identifiers = _identifiers(table)
    owner = [*table.owner_columns, *identifiers]
    which = "CASE " + " ".join(f"WHEN {_hit(c)} THEN {lit(c)}" for c in owner) + " END"
    n = con.execute(f"""
        UPDATE _stage SET _reason = {lit(ERASED_SUBJECT)}, _col = {which},
               _detail = 'column ' || {which} || ': {ERASED_SUBJECT}: row of an erased person (suppression list); '
                         || 'payload not kept',
               _orig = NULL
        WHERE {" OR ".join(_hit(c) for c in owner)}""").fetchone()[0]
    for col in table.reference_columns:
        con.execute(f"UPDATE _stage SET {ident(col)} = NULL WHERE {_hit(col)}")
        con.execute(f"UPDATE _stage SET _orig = json_merge_patch(_orig, {lit('{' + chr(34) + col + chr(34) + ':null}')})"
                    f" WHERE _orig IS NOT NULL AND json_extract_string(_orig, {lit('$.' + col)}) IN "
                    f"(SELECT v FROM _sv WHERE kind = {lit(USER_KIND)})")
    return int(n)


def record_links(con: duckdb.DuckDBPyConnection, table: contract.Table, now: datetime) -> None:
    """New accounts of erased persons (caught by phone or union id in ``_stage``) join the suppression list —
    in ``raw.erased_subjects`` and in ``_sv``, so later files of the batch catch them by user id — and the
    quarantined rows waiting for them lose their payload. Called once the load of their file is certain."""
    identifiers = _identifiers(table)
    if not identifiers or not con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = '_sv'").fetchone()[0]:
        return
    key = ident(table.key[0])
    which = "CASE " + " ".join(f"WHEN {_hit(c)} THEN {lit(c)}" for c in identifiers) + " END"
    linked = f"({' OR '.join(_hit(c) for c in identifiers)}) AND {key} IS NOT NULL"
    if not con.execute(f"SELECT count(*) FROM _stage WHERE {linked}").fetchone()[0]:
        return
    con.execute(f"""
        INSERT INTO raw.erased_subjects
        SELECT DISTINCT {UDF_NAME}({key}), {lit(USER_KIND)}, NULL,
               {lit(now.isoformat(' '))}::TIMESTAMP, 'landing: linked by ' || {which}
        FROM _stage WHERE {linked}
        ON CONFLICT DO NOTHING""")
    _scrub_waiting_rows(con, table)
    con.execute(f"INSERT INTO _sv SELECT DISTINCT {key}, {lit(USER_KIND)} FROM _stage WHERE {linked} "
                f"AND {key} NOT IN (SELECT v FROM _sv WHERE kind = {lit(USER_KIND)})")


def apply(con: duckdb.DuckDBPyConnection, table: contract.Table, now: datetime) -> int:
    """Quarantine staged rows of erased persons of one load (module docstring); returns how many."""
    hits, _ = build(con, table)
    if not hits:
        return 0
    n = mark(con, table)
    record_links(con, table, now)
    return n


def _scrub_waiting_rows(con: duckdb.DuckDBPyConnection, users: contract.Table) -> None:
    """Quarantined rows of the newly suppressed accounts (late arrivals waiting for them) lose their payload."""
    new_accounts = (f"SELECT {ident(users.key[0])} FROM _stage WHERE "
                    + " OR ".join(f"{ident(c)} IN (SELECT v FROM _sv WHERE kind = {lit(k)})"
                                  for c, k in IDENTIFIER_KINDS.items()))
    owner_json = " OR ".join(
        f"json_extract_string(original_row, {lit('$.' + c)}) IN ({new_accounts})"
        for c in sorted({c for t in contract.TABLES.values() for c in t.owner_columns}))
    con.execute(f"""
        UPDATE raw.quarantine SET original_row = NULL, reason_code = {lit(ERASED_SUBJECT)},
               reason_detail = 'row of an erased person (suppression list); payload removed'
        WHERE released_at IS NULL AND original_row IS NOT NULL AND ({owner_json})""")
