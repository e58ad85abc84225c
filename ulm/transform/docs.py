"""The project's documentation in one folder (``ulm docs``), readable without internet.

``<out>/`` (default ``<data dir>/docs``) holds:

* ``dbt/index.html``: dbt's docs site as one self-contained page (``dbt docs generate --static``: manifest and
  catalog inlined, no server needed). The project overview is ``dbt_project/models/overview.md``. dbt runs through
  the project's runner environment (:func:`ulm.transform.dbt.dbt_process_env`: the run context incl. ``ULM_AS_OF``,
  the PII key as ``DBT_ENV_SECRET_ULM_PII_KEY``), with the schema names of the published build (``marts``) and
  without dbt's anonymous usage tracking (the page would otherwise load a tracker script from a CDN).
* ``gx/index.html``: the Great Expectations data docs of the quality gates, validation runs listed by business day,
  made to render offline (:mod:`ulm.quality.docs_offline`). The gates write them to ``<data dir>/docs/gx``; a
  different ``--out`` gets a copy.
* ``index.html``: a small page linking both.
"""
from __future__ import annotations

import html
import logging
import shutil
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.quality.core import docs_dir_for
from ulm.quality.docs_offline import external_references, make_offline
from ulm.transform.dbt import (
    _process_env,
    _release_warehouse,
    dbt_args,
    dbt_dirs,
    dbt_process_env,
    ensure_sources,
)
from ulm.warehouse import connect_read_only, table_exists

log = logging.getLogger("ulm.docs")


def last_published_day(warehouse: Path) -> date | None:
    """The as-of day of the newest publish in ``audit.publish_log``; None without a warehouse or a publish."""
    if not Path(warehouse).exists():
        return None
    con = connect_read_only(warehouse)
    try:
        if not table_exists(con, "audit", "publish_log"):
            return None
        rows = con.execute("SELECT as_of FROM audit.publish_log ORDER BY published_at DESC LIMIT 1").fetchall()
    finally:
        con.close()
    return rows[0][0] if rows else None


def dbt_docs(ctx: RunContext, out_file: Path, progress: bool = False) -> dict[str, Any]:
    """``dbt docs generate --static`` for the context; the single-page site copied to ``out_file``."""
    from dbt.cli.main import dbtRunner

    as_of = ctx.require_as_of()
    env = dbt_process_env(ctx)  # a missing PII key is a one-line UlmError here, before dbt starts
    ensure_sources(ctx.warehouse)  # ... and a key other than the warehouse's is refused (docs/PRIVACY.md)
    args = ["docs", *dbt_args("generate", ctx, progress=progress), "--static", "--no-send-anonymous-usage-stats"]
    started = time.perf_counter()
    with _process_env(env):
        try:
            res = dbtRunner().invoke(args)
        finally:
            _release_warehouse()
    if res.exception is not None:
        first = str(res.exception).strip().splitlines()
        raise UlmError(f"dbt docs generate could not run: {first[0] if first else type(res.exception).__name__}")
    target, logs = dbt_dirs(ctx.warehouse)
    page = target / "static_index.html"
    if not res.success or not page.exists():
        raise UlmError(f"dbt docs generate failed (see the dbt log in {logs})")
    text = page.read_text(encoding="utf-8")
    external = external_references(text)
    if external:  # dbt's static page inlines everything; say so loudly should a dbt upgrade change that
        log.warning("dbt docs: %d external <link>/<script> tag(s) in %s, e.g. %s", len(external), page,
                    external[0].strip()[:120])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(page, out_file)
    return {"index": out_file, "as_of": as_of.isoformat(), "bytes": out_file.stat().st_size,
            "seconds": round(time.perf_counter() - started, 1)}


def gx_docs(data_dir: Path, out_dir: Path) -> dict[str, Any] | None:
    """The gates' data docs made offline (in place, idempotent) and, for another ``out_dir``, copied there."""
    source = docs_dir_for(data_dir)
    if not (source / "index.html").exists():
        return None
    offline = make_offline(source)
    if out_dir.resolve() != source.resolve():
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(source, out_dir)
    return {"index": out_dir / "index.html", **offline}


def build_docs(ctx: RunContext, out_dir: Path, progress: bool = False) -> dict[str, Any]:
    """dbt docs, GX data docs and a landing page under ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    dbt = dbt_docs(ctx, out_dir / "dbt" / "index.html", progress=progress)
    gx = gx_docs(ctx.data_dir, out_dir / "gx")
    index = out_dir / "index.html"
    index.write_text(_landing_page(dbt["as_of"], gx is not None), encoding="utf-8")
    return {"index": index, "dbt": dbt, "gx": gx}


def _landing_page(as_of: str, with_gx: bool) -> str:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gx = ('<li><a href="gx/index.html">Data quality</a>: the Great Expectations data docs of Gates 1-3, every '
          "expectation and its observed value, validation runs by business day</li>" if with_gx else
          "<li>Data quality: no gate has run yet (the gates of <code>ulm build</code> / <code>ulm run</code> "
          "write these docs)</li>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ULM docs</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2.5rem auto;padding:0 1rem;color:#212529}}
a{{color:#0b5cad}} code{{background:#f1f3f5;padding:0 .25rem;border-radius:3px}} .meta{{color:#6c757d}}</style>
</head><body>
<h1>ULM docs</h1>
<ul>
<li><a href="dbt/index.html">Data model</a>: the dbt project (overview, every model and column, tests, SQL,
lineage graph); compiled as of business day {html.escape(as_of)}</li>
{gx}
</ul>
<p>Metric definitions: <code>docs/METRICS.md</code>; reading the data: <code>docs/ANALYSTS.md</code>.</p>
<p class="meta">Written by <code>ulm docs</code> at {made}; no page needs internet.</p>
</body></html>
"""
