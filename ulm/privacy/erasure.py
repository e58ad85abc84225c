"""Right to be forgotten and right of access (docs/METRICS.md#privacy).

``erase``: for every ``raw.erasure_requests`` row not yet processed, find the person's accounts (the requested
account plus every account linked to it by a shared phone or union_id, multi-hop, exactly as identity resolution
links them), then delete every row of those accounts and of their person ids from every schema: raw (incl.
quarantined rows), staging, intermediate, marts, audit copies, ML feature snapshots and scores. Rows of OTHER
people that point at the person (an invite it accepted, an account it referred, a person it brought in) are kept,
with that reference set to NULL.
``audit.erasure_log`` records request id, request time, processing time and rows removed per table, without any
identifier of the person. The request row itself stays in ``raw.erasure_requests`` (and ``stg_erasure_requests``) as
the legal record (and keeps
staging from re-admitting the account should an old file be re-sent).

``access_export``: everything held about one account (raw rows, quarantined rows, and every non-raw row of its
person), as one JSON document.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ulm.core.errors import UlmError
from ulm.warehouse import connect, connect_read_only, ensure_audit_schema, transaction

log = logging.getLogger("ulm.privacy.erasure")

# columns saying whose row it is: rows matching them belong to the person (deleted / exported)
OWNER_ACCOUNT = ("user_id", "inviter_user_id")
OWNER_PERSON = ("person_id", "inviter_person_id", "sharer_person_id")
# columns pointing at the person from SOMEONE ELSE's row (who referred / invited / was brought in): nulled
REF_ACCOUNT = ("referrer_user_id", "invitee_user_id")
REF_PERSON = ("referrer_person_id", "invitee_person_id", "new_person_id")
MAX_HOPS = 50

def _linked_accounts(con, user_id: str) -> list[str]:
    """The requested account and every account sharing a phone or union_id with it, transitively (raw layer)."""
    con.execute("create or replace temp table _erase_set as select ?::varchar as user_id", [user_id])
    for _ in range(MAX_HOPS):
        added = con.execute("""
            insert into _erase_set
            select distinct u2.user_id
            from raw.users u1
            join raw.users u2
              on (u1.phone is not null and u1.phone <> '' and u2.phone = u1.phone)
              or (u1.union_id is not null and u1.union_id <> '' and u2.union_id = u1.union_id)
            where u1.user_id in (select user_id from _erase_set)
              and u2.user_id not in (select user_id from _erase_set)
        """).fetchone()[0]
        if not added:
            break
    return [r[0] for r in con.execute("select user_id from _erase_set order by 1").fetchall()]


def _tables_with(con, columns: tuple[str, ...], raw: bool) -> list[tuple[str, str, str]]:
    op = "=" if raw else "<>"
    return con.execute(f"""
        select c.table_schema, c.table_name, c.column_name
        from information_schema.columns c
        join information_schema.tables t using (table_catalog, table_schema, table_name)
        where t.table_type = 'BASE TABLE' and c.table_schema {op} 'raw'
          and c.column_name in ({", ".join("'" + c + "'" for c in columns)})
        order by 1, 2, 3
    """).fetchall()


def _person_ids(con, accounts: list[str]) -> list[str]:
    ids: set[str] = set()
    for schema, table, _ in _tables_with(con, ("person_id",), raw=False):
        cols = {r[0] for r in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, table]).fetchall()}
        if "user_id" in cols:
            ids.update(r[0] for r in con.execute(
                f'select distinct person_id from "{schema}"."{table}" where user_id in '
                f"(select unnest(?::varchar[]))", [accounts]).fetchall() if r[0] is not None)
    return sorted(ids)


def erase(warehouse: Path) -> dict:
    """Process every pending erasure request. Returns {"requests": n, "rows_removed": {table: n}}."""
    if not Path(warehouse).exists():
        raise UlmError(f"warehouse {warehouse} does not exist; run `ulm ingest` first")
    con = connect(warehouse)
    try:
        ensure_audit_schema(con)
        try:
            pending = con.execute("""
                select request_id, user_id, requested_at from raw.erasure_requests
                where request_id not in (select request_id from audit.erasure_log)
                order by requested_at, request_id
            """).fetchall()
        except duckdb.CatalogException:
            raise UlmError("raw.erasure_requests does not exist; ingest landing data first") from None
        totals: dict[str, int] = {}
        for request_id, user_id, requested_at in pending:
            removed = _erase_one(con, user_id)
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            rows = [(request_id, requested_at, now, t, n) for t, n in sorted(removed.items())] or \
                   [(request_id, requested_at, now, "(none)", 0)]
            con.executemany("insert into audit.erasure_log values (?, ?, ?, ?, ?)", rows)
            for t, n in removed.items():
                totals[t] = totals.get(t, 0) + n
            log.info("erasure request %s: %s rows removed in %s tables", request_id,
                     f"{sum(removed.values()):,}", len(removed))
        return {"requests": len(pending), "rows_removed": totals}
    finally:
        con.close()


def _erase_one(con, user_id: str) -> dict[str, int]:
    with transaction(con):
        accounts = _linked_accounts(con, user_id)
        persons = _person_ids(con, accounts)
        removed: dict[str, int] = {}

        def count(key: str, n: int) -> None:
            if n:
                removed[key] = removed.get(key, 0) + n

        # references from other people's rows are nulled first, then the person's own rows deleted
        for raw in (True, False):
            for schema, table, column in _tables_with(con, REF_ACCOUNT + REF_PERSON, raw=raw):
                ids = accounts if column in REF_ACCOUNT else persons
                if ids:
                    con.execute(f'update "{schema}"."{table}" set "{column}" = null '
                                f'where "{column}" in (select unnest(?::varchar[]))', [ids])
        for schema, table, column in _tables_with(con, OWNER_ACCOUNT, raw=True):
            if table == "erasure_requests":
                continue
            n = con.execute(f'delete from raw."{table}" where "{column}" in (select unnest(?::varchar[]))',
                            [accounts]).fetchone()[0]
            count(f"raw.{table}", n)
        if con.execute("select count(*) from information_schema.tables where table_schema = 'raw' "
                       "and table_name = 'quarantine'").fetchone()[0]:
            n = con.execute("""
                delete from raw.quarantine
                where coalesce(json_extract_string(original_row, '$.user_id'),
                               json_extract_string(original_row, '$.inviter_user_id'))
                      in (select unnest(?::varchar[]))
            """, [accounts]).fetchone()[0]
            count("raw.quarantine", n)
        # every other schema: rows naming the accounts or their persons
        for schema, table, column in _tables_with(con, OWNER_ACCOUNT + OWNER_PERSON, raw=False):
            ids = accounts if column in OWNER_ACCOUNT else persons
            if not ids:
                continue
            n = con.execute(f'delete from "{schema}"."{table}" where "{column}" in (select unnest(?::varchar[]))',
                            [ids]).fetchone()[0]
            count(f"{schema}.{table}", n)
    return removed


def access_export(warehouse: Path, user_id: str, out: Path) -> dict:
    """Write everything held about one account (and its person) as JSON; returns {table: rows}."""
    con = connect_read_only(warehouse)
    try:
        accounts = [user_id]
        persons = _person_ids(con, accounts)
        doc: dict[str, list[dict]] = {}
        for schema, table, column in _tables_with(con, OWNER_ACCOUNT, raw=True):
            _collect(con, doc, schema, table, column, accounts)
        for schema, table, column in _tables_with(con, OWNER_ACCOUNT + OWNER_PERSON, raw=False):
            _collect(con, doc, schema, table, column, accounts if column in OWNER_ACCOUNT else persons)
    finally:
        con.close()
    if not any(doc.values()):
        raise UlmError(f"no data held for account {user_id!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"user_id": user_id, "person_ids": persons, "tables": doc}, indent=1, default=str),
                   encoding="utf-8")
    return {t: len(rows) for t, rows in doc.items()}


def _collect(con, doc, schema, table, column, ids) -> None:
    if not ids:
        return
    cur = con.execute(f'select * from "{schema}"."{table}" where "{column}" in (select unnest(?::varchar[]))', [ids])
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    if rows:
        doc.setdefault(f"{schema}.{table}", []).extend(rows)
