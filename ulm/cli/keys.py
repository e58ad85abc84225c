"""`ulm rotate-key`: change the PII key on purpose (docs/PRIVACY.md#key-rotation).

The key in ``ULM_PII_KEY`` is the NEW key. The command refuses when there is nothing to rotate, or when the
erasure suppression list would be lost (its hashes are keyed by the old key and cannot be recomputed: the raw
values are gone, so the old key must stay in force for it as ``ULM_SUPPRESSION_KEY``). Then it records the new
key's fingerprint and rebuilds everything with ``--full-refresh`` through write-audit-publish, so every hash is
recomputed from ``raw``. Person ids do not change: they hash the smallest member user id, not PII.

Consistency: the new fingerprint is recorded before the build (the build checks the key like any other) and
deleted again if the build fails or is interrupted, so a failed rotation leaves the warehouse as it was: the old
key in force, the published marts unchanged. No model that keeps history (incremental) holds a keyed hash, so the
next build with the old key recomputes every hash the failed rebuild may have left in the ``audit_*`` schemas.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

from ulm.cli import _context, _parse_date, _wait_option, _writer, friendly_errors, main
from ulm.core.context import RunContext
from ulm.core.errors import UlmError

NOTE = "rotate-key"


def _erased_subjects(con) -> int:
    from ulm.warehouse import RAW, table_exists

    if not table_exists(con, RAW, "erased_subjects"):
        return 0
    return int(con.execute(f"SELECT count(*) FROM {RAW}.erased_subjects").fetchall()[0][0])


def _plan(con, new_key: str, source: str) -> dict[str, Any]:
    """Check that a rotation makes sense and is safe; return the fingerprints to record (nothing written yet)."""
    from ulm.core import settings
    from ulm.privacy import keys

    new_fp = keys.fingerprint(new_key)
    old = keys.recorded_fingerprint(con, "pii")
    if old is not None and old.fingerprint == new_fp:
        raise UlmError(f"nothing to rotate: the PII key from {source} is the key this warehouse was built with "
                       f"(fingerprint {new_fp}); set {settings.PII_KEY_ENV} to the new key first "
                       f"({keys.DOCS_ROTATION})")
    erased = _erased_subjects(con)
    sup_key = keys.current_key("suppression")
    sup_fp = keys.fingerprint(sup_key)
    sup_old = keys.recorded_fingerprint(con, "suppression")
    record = [("pii", new_fp)]
    if erased:
        if sup_key == new_key:
            raise UlmError(f"the suppression list raw.erased_subjects ({erased} hash(es)) is keyed by the old key and "
                           f"cannot be re-hashed (its raw values are gone): set {settings.SUPPRESSION_KEY_ENV} to the "
                           f"old key first, then run `ulm rotate-key` again ({keys.DOCS_ROTATION})")
        if sup_old is not None and sup_old.fingerprint != sup_fp:
            raise UlmError(keys.mismatch_message("suppression", sup_old, sup_fp))
        if sup_old is None:
            record.append(("suppression", sup_fp))
    elif sup_old is None or sup_old.fingerprint != sup_fp:
        record.append(("suppression", sup_fp))  # an empty list: its key from now on is the current one
    return {"old": old, "new_fp": new_fp, "erased": erased, "sup_fp": sup_fp, "record": record}


def _forget(warehouse, rows: list[tuple[str, str]], at: datetime) -> None:
    """Undo the fingerprints one rotation recorded (exactly those rows)."""
    from ulm.privacy.keys import FINGERPRINTS
    from ulm.warehouse import connect, transaction

    con = connect(warehouse)
    try:
        with transaction(con):
            for role, fp in rows:
                con.execute(f"DELETE FROM {FINGERPRINTS} WHERE role = ? AND fingerprint = ? AND recorded_at = ? "
                            "AND note = ?", [role, fp, at, NOTE])
    finally:
        con.close()


def rotate(ctx: RunContext, *, progress: bool = True) -> dict[str, Any]:
    """Rotate the PII key of the context's warehouse to ``ULM_PII_KEY`` and rebuild (module docstring).

    Call it holding the warehouse's write lock. Returns the plan and the build result.
    """
    from ulm.privacy import keys
    from ulm.transform.wap import build_and_publish, require_raw_data
    from ulm.warehouse import connect, transaction

    source = keys.ensure_local_pii_key()
    new_key = keys.require_pii_key()
    ctx.require_as_of()
    require_raw_data(ctx)
    con = connect(ctx.warehouse)
    try:
        plan = _plan(con, new_key, source)
        at = datetime.now(timezone.utc).replace(tzinfo=None)
        with transaction(con):
            for role, fp in plan["record"]:
                keys.record_fingerprint(con, role, fp, note=NOTE, at=at)
    finally:
        con.close()
    try:
        result = build_and_publish(ctx, full_refresh=True, progress=progress)
    except BaseException as exc:
        _forget(ctx.warehouse, plan["record"], at)
        if not isinstance(exc, UlmError):
            raise
        old = plan["old"]
        kept = f"the old key (fingerprint {old.fingerprint}) is still in force" if old else "no key recorded, as before"
        raise UlmError(f"key rotation undone ({kept}; published marts unchanged): {exc}") from None
    return {**plan, "recorded_at": at, "build": result}


@main.command("rotate-key")
@click.option("--as-of", "as_of", callback=_parse_date, required=True,
              help="Business date of the full rebuild, YYYY-MM-DD (usually the last day built).")
@_wait_option
@click.pass_context
@friendly_errors
def rotate_key(ctx, as_of, wait_seconds):
    """Re-hash every PII hash with a new key: the key in ULM_PII_KEY (docs/PRIVACY.md#key-rotation).

    Set ULM_PII_KEY to the NEW key. If the erasure suppression list is not empty, also set ULM_SUPPRESSION_KEY to
    the OLD key (the list cannot be re-hashed: its raw values are gone) and keep it set from now on. Records the new
    key's fingerprint, then rebuilds everything (--full-refresh, write-audit-publish) as of --as-of. Person ids do not
    change. A failed rebuild is undone: the old key stays in force and the published marts stay as they were.
    """
    from ulm.core import settings
    from ulm.privacy.keys import local_key_file, local_key_fingerprint
    from ulm.transform.dbt import summary_lines

    run_ctx = _context(ctx, as_of=as_of)
    with _writer(ctx, f"ulm rotate-key --as-of {as_of}", wait_seconds):
        res = rotate(run_ctx)
    old, build = res["old"], res["build"]
    click.echo(f"rotated the PII key of {run_ctx.warehouse}: fingerprint "
               f"{old.fingerprint if old else '(none recorded)'} -> {res['new_fp']}")
    if res["erased"]:
        click.echo(f"  suppression list: {res['erased']} hash(es), still keyed by {settings.SUPPRESSION_KEY_ENV} "
                   f"(fingerprint {res['sup_fp']}): keep it set to that key from now on")
    else:
        click.echo(f"  suppression list: empty; its key from now on has fingerprint {res['sup_fp']}")
    click.echo(f"  published marts as of {as_of} (run {build['run_id']}), rebuilt from raw with --full-refresh: "
               f"{build['publish']['tables']} tables, gates passed, {build['export']['persons']} persons in "
               f"{len(build['export']['rules'])} audiences")
    for line in summary_lines(build["dbt"]):
        click.echo("  " + line)
    click.echo(f"  next: set {settings.PII_KEY_ENV} to the new key everywhere (Airflow, CI, secret store)")
    if local_key_fingerprint() not in (None, res["new_fp"]):
        click.echo(f"  note: the demo key file {local_key_file()} still holds the old key; commands run without "
                   f"{settings.PII_KEY_ENV} use it and will refuse this warehouse")
