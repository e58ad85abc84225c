"""Make the GX Data Docs under ``<data>/docs/gx`` render without internet, and list validation runs by business day.

GX 1.x pages load bootstrap 4, bootstrap-table, font-awesome, jQuery, popper, bootstrap-datepicker and vega from
CDNs, and the logo from GX's web-asset bucket (with the data context id in the query string). No copy of those
files ships in the environment (checked: none of the installed packages bundles bootstrap, bootstrap-table or
font-awesome's CSS, and the only jQuery is compiled into pydeck's notebook bundle), so :func:`make_offline`

* strips every ``<link>`` / ``<script>`` that points to ``http(s)://`` and links two local files instead:
  ``static/styles/ulm-offline.css`` (layout, tables, badges, the few icons GX uses) and
  ``static/scripts/ulm-offline.js`` (a tiny stand-in for the jQuery calls of GX's inline scripts: "Failed only",
  "Show more info...", tabs, closing alerts);
* points the logo at GX's own local copy (``static/images/logo-long.png``) and fixes the favicon path (GX
  writes it one level short on nested pages);
* renders the index's two tables as plain HTML (GX fills them with bootstrap-table from the CDN, so offline they
  were empty): validation results grouped by business day, newest first, from the run names ``<YYYY-MM-DD> <gate>``
  that :func:`ulm.quality.core.run_gate` gives them; older run names go under "other runs".

Idempotent: a processed page carries ``<meta name="ulm-offline">`` and is skipped, so a second pass reads each
page once and writes nothing. GX rewrites every page on each ``build_data_docs``, which is why
:func:`ulm.quality.core.run_gate` calls this right after it.
"""
from __future__ import annotations

import ast
import html
import os
import re
import time
from pathlib import Path
from typing import Any

MARKER = '<meta name="ulm-offline" content="1">'
CSS_REL = "static/styles/ulm-offline.css"
JS_REL = "static/scripts/ulm-offline.js"
LOGO_REL = "static/images/logo-long.png"
GATE_ORDER = {"landing": 0, "staging": 1, "marts": 2}

_EXTERNAL_LINK = re.compile(r"""<link\b[^>]*\bhref=["']?(?:https?:)?//[^>]*>[ \t]*\n?""", re.I)
_EXTERNAL_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc=["']?(?:https?:)?//[^>]*>\s*</script>[ \t]*\n?""", re.I)
_GX_LOGO = re.compile(r"""(<img\b[^>]*?\bsrc=")https?://great-expectations-web-assets[^"]*(")""", re.I)
_FAVICON = re.compile(r'(<link rel="shortcut icon" href=")[^"]*static/images/favicon\.ico"')  # GX: one ../ short
_TABLE_SCRIPT = re.compile(r"<script>\s*\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\((?P<body>.*?)</script>", re.S)
_TABLE_HELPERS = re.compile(r"<script>\s*function rowStyleLinks\b.*?</script>\s*", re.S)  # bootstrap-table callbacks
_COLUMNS = re.compile(r"^\s*columns: (\[.*\]),\s*$", re.M)
_DATA = re.compile(r"^\s*data: (\[.*\]),\s*$", re.M)
_TOOLBAR = re.compile(r'<div id="[\w-]+-toolbar"[^>]*>.*?</div>\s*', re.S)
_DAY_RUN = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\w+)$")

CSS = """\
/* ULM: offline stand-in for the CDN stylesheets of the GX Data Docs (bootstrap 4, bootstrap-table, font-awesome).
   Written by ulm.quality.docs_offline; keeps the pages and their tables readable without internet. */
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #212529;
       background: #fff; margin: 0; }
a { color: #0b5cad; text-decoration: none; } a:hover { text-decoration: underline; }
h1, h2, h3, h4, h5, h6, .h6 { margin: .3rem 0; font-weight: 600; line-height: 1.25; }
h4 { font-size: 1.2rem; } h5 { font-size: 1.05rem; } h6, .h6 { font-size: .95rem; }
.lead { font-size: 1rem; color: #495057; }
.navbar { display: flex; align-items: center; padding: .4rem 1rem; background: #fff; }
.navbar img { height: 34px !important; }
.sticky-top { position: sticky; top: 0; z-index: 10; }
.border-bottom { border-bottom: 1px solid #dee2e6; }
.breadcrumb { display: flex; flex-wrap: wrap; list-style: none; margin: 0 0 0 1rem; padding: .25rem .8rem;
              background: #f1f3f5; border-radius: 4px; }
.breadcrumb-item + .breadcrumb-item::before { content: "/"; padding: 0 .4rem; color: #6c757d; }
.container-fluid { box-sizing: border-box; width: 100%; padding: 1rem 1.5rem; }
.container-fluid .container-fluid { padding: 0; }
.row { display: flex; flex-wrap: wrap; }
[class*="col-"] { box-sizing: border-box; flex: 0 0 100%; max-width: 100%; padding: 0 .5rem; }
.col-6 { flex: 0 0 50%; max-width: 50%; }
@media (min-width: 768px) {
  .col-md-2, .col-lg-2 { flex: 0 0 16.6667%; max-width: 16.6667%; }
  .col-md-10, .col-lg-10 { flex: 0 0 83.3333%; max-width: 83.3333%; }
}
.d-none { display: none; }
@media (min-width: 768px) { .d-md-block { display: block; } .d-md-inline-flex { display: inline-flex; } }
.d-flex { display: flex; } .justify-content-center { justify-content: center; } .align-items-center { align-items: center; }
.sticky { position: sticky; top: 80px; }
.invisible, #ge-cta-footer { display: none; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0; }
th, td { border-top: 1px solid #dee2e6; padding: .3rem .55rem; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #dee2e6; background: #f8f9fa; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
.table-responsive { overflow-x: auto; }
.show-scrollbars { overflow-x: auto; }
.alert { padding: .55rem .9rem; margin-bottom: .8rem; border: 1px solid #d6d8db; border-radius: 4px; background: #e9ecef; }
.alert-info { background: #d1ecf1; border-color: #bee5eb; }
.card { border: 1px solid #dee2e6; border-radius: 4px; margin-bottom: 1rem; background: #fff; }
.card-header { padding: .45rem .75rem; background: #f8f9fa; border-bottom: 1px solid #dee2e6; }
.card-body { padding: .6rem .75rem; }
.badge { display: inline-block; padding: .1em .45em; margin: .05em; border-radius: 3px; font-size: 85%;
         background: #6c757d; color: #fff; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.btn { display: inline-block; padding: .25rem .65rem; border: 1px solid #0b5cad; border-radius: 4px;
       background: #fff; color: #0b5cad; cursor: pointer; font-size: 13px; }
.btn.active { background: #0b5cad; color: #fff; }
.btn-group { display: inline-flex; gap: .3rem; } .btn-group-toggle input { display: none; }
.nav { list-style: none; margin: 0; padding: 0; }
.nav-pills .nav-link { display: block; padding: .15rem .4rem; }
.nav-tabs { display: flex; gap: .25rem; border-bottom: 1px solid #dee2e6; margin-bottom: .8rem; }
.nav-tabs .nav-link { display: block; padding: .4rem .9rem; border: 1px solid transparent; border-radius: 4px 4px 0 0; }
.nav-tabs .nav-link.active { border-color: #dee2e6 #dee2e6 #fff; background: #fff; margin-bottom: -1px; }
.tab-content > .tab-pane { display: none; } .tab-content > .tab-pane.active { display: block; }
.collapse:not(.show) { display: none; }
.fas { font-style: normal; display: inline-block; min-width: 1em; text-align: center; }
.fa-check-circle::before { content: "\\2714"; }
.fa-times::before, .fa-times-circle::before { content: "\\2718"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.fa-question-circle::before { content: "?"; }
.fa-comment::before { content: "\\1F4AC"; }
.text-success, .ulm-ok { color: #1e7e34; } .text-danger, .ulm-failed { color: #c82333; } .text-warning { color: #a07000; }
.ulm-note { color: #495057; margin: .3rem 0 .8rem; }
details.ulm-day { border: 1px solid #dee2e6; border-radius: 4px; margin: .5rem 0; padding: .3rem .7rem; }
details.ulm-day > summary { cursor: pointer; font-weight: 600; padding: .2rem 0; }
footer { display: none; }  /* GX's newsletter footer */
.ulm-nowrap { white-space: nowrap; }
"""

JS = """\
/* ULM: offline stand-in for jQuery + bootstrap's JS in the GX Data Docs (written by ulm.quality.docs_offline).
   Just enough for GX's inline scripts: "Failed only" / "Show all", "Show more info...", tabs, closing alerts. */
(function () {
  function W(els) { this.els = els.filter(Boolean); }
  W.prototype = {
    each: function (f) { this.els.forEach(function (e, i) { f(i, e); }); return this; },
    parent: function () { return new W(this.els.map(function (e) { return e.parentElement; })); },
    fadeIn: function () { return this.each(function (i, e) { e.style.display = ""; }); },
    fadeOut: function () { return this.each(function (i, e) { e.style.display = "none"; }); },
    removeClass: function (c) { return this.each(function (i, e) { e.classList.remove(c); }); },
    data: function (k) { return this.els[0] ? this.els[0].getAttribute("data-" + k) : undefined; },
    ready: function (f) { return $(f); },
    on: function () { return this; }, modal: function () { return this; }, bootstrapTable: function () { return this; }
  };
  function $(sel) {
    if (typeof sel === "function") {
      if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", sel); } else { sel(); }
      return new W([]);
    }
    if (sel === document || sel === window || (sel && sel.nodeType)) { return new W([sel]); }
    try { return new W(Array.prototype.slice.call(document.querySelectorAll(sel))); } catch (e) { return new W([]); }
  }
  window.$ = window.jQuery = $;
  window.vegaEmbed = function (sel) {
    var el = typeof sel === "string" ? document.querySelector(sel) : sel;
    if (el) { el.textContent = "(chart not shown: its vega library needs internet)"; }
    return Promise.resolve();
  };
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest(".btn-group-toggle .btn");
    if (btn) {
      btn.parentElement.querySelectorAll(".btn").forEach(function (b) { b.classList.remove("active"); });
      btn.classList.add("active");
    }
    var a = ev.target.closest && ev.target.closest('[data-toggle="collapse"], [data-toggle="tab"], [data-dismiss="alert"]');
    if (!a) { return; }
    if (a.getAttribute("data-dismiss") === "alert") { var al = a.closest(".alert"); if (al) { al.remove(); } return; }
    var target = document.getElementById((a.getAttribute("href") || "").replace(/^#/, ""));
    if (!target) { return; }
    ev.preventDefault();
    if (a.getAttribute("data-toggle") === "collapse") { target.classList.toggle("show"); return; }
    var nav = a.closest(".nav");
    if (nav) { nav.querySelectorAll(".nav-link").forEach(function (l) { l.classList.remove("active"); }); }
    a.classList.add("active");
    Array.prototype.forEach.call(target.parentElement.children, function (p) { p.classList.remove("active", "show"); });
    target.classList.add("active", "show");
  });
})();
"""


def write_assets(docs_dir: Path) -> None:
    """The local stylesheet and script every processed page links (rewritten only when their text changed)."""
    for rel, text in ((CSS_REL, CSS), (JS_REL, JS)):
        path = docs_dir / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def make_offline(docs_dir: Path, since: float | None = None) -> dict[str, Any]:
    """Process every HTML page under ``docs_dir`` (a GX Data Docs site); see the module docstring.

    ``since``: only pages modified at or after this time (``time.time()``), i.e. the ones a build just wrote;
    the others were processed when they were written and are not even read."""
    started = time.perf_counter()
    docs_dir = Path(docs_dir)
    processed = skipped = 0
    if not docs_dir.is_dir():
        return {"pages": 0, "skipped": 0, "seconds": 0.0}
    write_assets(docs_dir)
    for path in sorted(docs_dir.rglob("*.html")):
        if since is not None and path.stat().st_mtime < since:
            skipped += 1
            continue
        text = path.read_text(encoding="utf-8")
        if MARKER in text:
            skipped += 1
            continue
        new = offline_page(text, os.path.relpath(docs_dir, path.parent).replace(os.sep, "/"),
                           index=path == docs_dir / "index.html")
        tmp = path.with_name(f".{path.name}.offline")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
        processed += 1
    return {"pages": processed, "skipped": skipped, "seconds": round(time.perf_counter() - started, 3)}


def external_references(text: str) -> list[str]:
    """The ``<link>`` and ``<script>`` tags of a page that load something from another host."""
    return _EXTERNAL_LINK.findall(text) + _EXTERNAL_SCRIPT.findall(text)


def offline_page(text: str, root: str, index: bool = False) -> str:
    """One page without CDN references, linking the local assets (``root``: relative path to the site root)."""
    text = _EXTERNAL_SCRIPT.sub("", _EXTERNAL_LINK.sub("", text))
    text = _GX_LOGO.sub(rf"\g<1>{root}/{LOGO_REL}\g<2>", text)
    text = _FAVICON.sub(rf'\g<1>{root}/static/images/favicon.ico"', text)
    if index:
        text = _static_index_tables(text)
    head = (f"{MARKER}\n    <link rel=\"stylesheet\" href=\"{root}/{CSS_REL}\">\n"
            f"    <script src=\"{root}/{JS_REL}\"></script>\n  </head>")
    return text.replace("</head>", head, 1) if "</head>" in text else MARKER + text


# --------------------------------------------------------------------------------------------- the index

def _static_index_tables(text: str) -> str:
    """Replace each bootstrap-table script of the index with the table it would have drawn, as plain HTML."""
    for match in list(_TABLE_SCRIPT.finditer(text)):
        table_id, body = match.group("id"), match.group("body")
        cols, data = _COLUMNS.search(body), _DATA.search(body)
        if not (cols and data):
            continue
        try:
            columns, rows = ast.literal_eval(cols.group(1)), ast.literal_eval(data.group(1))
        except (ValueError, SyntaxError):
            continue
        if any(c.get("field") == "run_name" for c in columns):
            rendered = _validations_by_day(rows)
        else:
            rendered = _plain_table(table_id, columns, rows)
        empty = re.compile(rf'<table\s+id="{re.escape(table_id)}"[^>]*>\s*</table>', re.S)
        text = text.replace(match.group(0), "")
        text = empty.sub(lambda _m, r=rendered: r, text, count=1)
    return _TABLE_HELPERS.sub("", _TOOLBAR.sub("", text))


def _plain_table(table_id: str, columns: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c.get('title', c.get('field', ''))))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = str(row.get(c["field"], ""))
            link = row.get("_table_row_link_path")
            if link and "<a " not in value:
                value = f'<a href="{html.escape(link)}">{html.escape(value)}</a>'
            cells.append(f"<td>{value}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table id="{table_id}" class="table table-sm"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _validations_by_day(rows: list[dict[str, Any]]) -> str:
    """Validation results grouped by business day (newest first), one table per day."""
    days: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    other: list[tuple[str, dict[str, Any]]] = []
    for row in rows:
        m = _DAY_RUN.match(str(row.get("run_name", "")))
        if m:
            days.setdefault(m.group(1), []).append((m.group(2), row))
        else:
            other.append((str(row.get("run_name", "")), row))
    parts = ['<p class="ulm-note">Validation runs by business day (as-of day), newest first; one run per gate and '
             "day, a re-run adds another run time. Run ids: <code>audit.gate_results.run_id</code>.</p>"]
    for i, day in enumerate(sorted(days, reverse=True)):
        parts.append(_day_block(f"business day {day}", days[day], is_open=i == 0, gate_header="gate"))
    if other:
        parts.append(_day_block("other runs (named by run id, before runs were named by business day)", other,
                                is_open=not days, gate_header="run name"))
    if not rows:
        parts.append("<p>No validation results yet.</p>")
    return "\n".join(parts)


def _day_block(title: str, entries: list[tuple[str, dict[str, Any]]], *, is_open: bool, gate_header: str) -> str:
    entries = sorted(entries, key=lambda e: (-float(e[1].get("_run_time_sort") or 0), GATE_ORDER.get(e[0], 9),
                                             str(e[1].get("_expectation_suite_name_sort", ""))))
    failed = sum(1 for _, r in entries if r.get("_validation_success_text") != "Success")
    gates = sorted({g for g, _ in entries}, key=lambda g: (GATE_ORDER.get(g, 9), g))
    status = (f'<span class="ulm-failed">{failed} failed</span>' if failed else '<span class="ulm-ok">all passed</span>')
    summary = (f"{html.escape(title)}: {len(entries)} validations ({html.escape(', '.join(gates))}), {status}"
               if gate_header == "gate" else f"{html.escape(title)}: {len(entries)} validations, {status}")
    body = []
    for gate, row in entries:
        ok = row.get("_validation_success_text") == "Success"
        mark = '<span class="ulm-ok">&#10004; passed</span>' if ok else '<span class="ulm-failed">&#10008; failed</span>'
        link = html.escape(str(row.get("_table_row_link_path", "")))
        asset = html.escape(str(row.get("asset_name") or row.get("_expectation_suite_name_sort", "")))
        body.append(f"<tr><td class=\"ulm-nowrap\">{mark}</td><td>{html.escape(gate)}</td>"
                    f"<td><a href=\"{link}\">{asset}</a></td>"
                    f"<td class=\"ulm-nowrap\">{html.escape(str(row.get('run_time', '')))}</td>"
                    f"<td>{row.get('expectation_suite_name', '')}</td></tr>")
    return (f'<details class="ulm-day"{" open" if is_open else ""}><summary>{summary}</summary>'
            f'<table class="table table-sm ge-index-page-validation-results-table"><thead><tr><th>status</th>'
            f"<th>{gate_header}</th><th>validation</th><th>run time</th><th>expectation suite</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></details>")
