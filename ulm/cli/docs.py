"""`ulm docs`: the project's documentation in one folder, readable without internet (ulm/transform/docs.py).

dbt's docs site as one page (overview, every model and column, lineage graph), the Great Expectations data docs of
the gates (validation runs by business day) and a page linking both. ``ulm ui`` serves the folder.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from ulm.cli import _context, _parse_date, _wait_option, _writer, friendly_errors, main


@main.command("docs")
@click.option("--as-of", "as_of", callback=_parse_date, default=None,
              help="Business day the docs' compiled SQL is as of, YYYY-MM-DD (default: the as-of day of the last "
                   "publish in audit.publish_log, else today).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write (default <data dir>/docs): index.html, dbt/index.html, gx/index.html.")
@_wait_option
@click.pass_context
@friendly_errors
def docs(ctx, as_of, out_dir, wait_seconds):
    """Build the docs: dbt's docs site (one self-contained page) and the GX data docs, both offline.

    Writes OUT/dbt/index.html (dbt docs generate --static: the project overview, every model and column with its
    description and tests, SQL, the lineage graph), OUT/gx/index.html (the quality gates' results, runs by business
    day) and OUT/index.html linking both. Open them as files, or serve them with `ulm ui`.
    """
    from ulm.privacy.keys import ensure_local_pii_key
    from ulm.transform.docs import build_docs, last_published_day

    ensure_local_pii_key()  # dbt loads the hashing plugin; the key must match the warehouse's (docs/PRIVACY.md)
    with _writer(ctx, "ulm docs", wait_seconds):
        day = as_of or last_published_day(ctx.obj["warehouse"]) or date.today()
        run_ctx = _context(ctx, as_of=day)
        res = build_docs(run_ctx, out_dir or run_ctx.data_dir / "docs")
    dbt, gx = res["dbt"], res["gx"]
    click.echo(f"docs as of {day} in {res['index'].parent}")
    click.echo(f"  index : {res['index']}")
    click.echo(f"  dbt   : {dbt['index']} ({dbt['bytes'] / 1e6:.1f} MB, {dbt['seconds']:.0f} s)")
    if gx:
        click.echo(f"  GX    : {gx['index']} ({gx['pages'] + gx['skipped']} pages, runs by business day)")
    else:
        click.echo("  GX    : none yet (the gates of `ulm build` / `ulm run` write them)")
