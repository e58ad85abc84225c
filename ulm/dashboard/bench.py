"""Render time of each dashboard page (for ``ulm bench``): Streamlit's AppTest, no browser, no server.

:func:`page_times` renders every page twice: cold (query cache cleared: every query runs on the snapshot) and warm
(the same session rerun: every query answered from ``st.cache_data``). One untimed render first pays the imports
(Altair, pandas styling), so the cold time is the page's own. Browser-side drawing (Vega) is not included.
"""
from __future__ import annotations

import time
from pathlib import Path

from ulm.core.errors import UlmError
from ulm.dashboard import APP, PAGES
from ulm.dashboard.data import clear_cache

DEFAULT_TIMEOUT = 180.0


def _app(snapshot: Path, slug: str, timeout: float):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.session_state["ulm_snapshot"] = str(snapshot)
    at.switch_page(f"views/{slug}.py")
    return at


def _run(at, slug: str) -> float:
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise UlmError(f"dashboard page {slug}: {at.exception[0].value}")
    return seconds


def page_times(snapshot: Path, pages: tuple[str, ...] | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> dict[str, dict[str, float]]:
    """``{page: {"cold": seconds, "warm": seconds}}`` for each page (all pages by default) on ``snapshot``."""
    snapshot = Path(snapshot)
    if not snapshot.is_file():
        raise UlmError(f"no serving snapshot at {snapshot}")
    slugs = pages or tuple(slug for slug, _, _ in PAGES)
    unknown = set(slugs) - {slug for slug, _, _ in PAGES}
    if unknown:
        raise UlmError(f"unknown dashboard page(s): {', '.join(sorted(unknown))}")
    _run(_app(snapshot, slugs[0], timeout), slugs[0])  # imports, untimed
    out: dict[str, dict[str, float]] = {}
    for slug in slugs:
        clear_cache()
        at = _app(snapshot, slug, timeout)
        cold = _run(at, slug)
        warm = _run(at, slug)
        out[slug] = {"cold": round(cold, 3), "warm": round(warm, 3)}
    clear_cache()
    return out
