"""Entry script of the dashboard: ``streamlit run app.py -- --snapshot PATH [--mlflow-url U] [--airflow-url U]``.

``ulm dashboard`` runs it. It finds the snapshot (session state ``ulm_snapshot`` > ``--snapshot`` > the data dir's
serving snapshot), shows a clear message when there is none, draws the sidebar (snapshot as-of day and run id,
date range, channel / platform filters, links) and runs the selected page with that context.
"""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import streamlit as st

from ulm.core.settings import data_dir
from ulm.dashboard import DEFAULT_AIRFLOW_URL, DEFAULT_MLFLOW_URL, NO_SNAPSHOT, PAGES, data, ui
from ulm.transform.serving import serving_path

DEFAULT_RANGE_DAYS = 365


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--snapshot", default=None)
    parser.add_argument("--mlflow-url", default=DEFAULT_MLFLOW_URL)
    parser.add_argument("--airflow-url", default=DEFAULT_AIRFLOW_URL)
    return parser.parse_known_args(sys.argv[1:])[0]


def _snapshot_path(args: argparse.Namespace) -> Path:
    chosen = st.session_state.get("ulm_snapshot") or args.snapshot
    return Path(chosen) if chosen else serving_path(data_dir())


def _sidebar(snap: data.Snapshot, meta: dict) -> data.Filters:
    sb = st.sidebar
    sb.markdown(f"**Snapshot** as of **{meta.get('as_of') or '?'}**")
    sb.caption(f"run `{meta.get('run_id') or '?'}` · {meta.get('reason') or '?'} · written "
               f"{str(meta.get('written_at') or '?')[:19]} UTC")
    lo, hi = data.date_bounds(snap)
    hi = meta.get("as_of") or hi
    start = end = None
    if lo and hi:
        lo = min(lo, hi)
        default = (max(lo, hi - timedelta(days=DEFAULT_RANGE_DAYS - 1)), hi)
        picked = sb.date_input("Date range", value=default, min_value=lo, max_value=hi, format="YYYY-MM-DD")
        picked = tuple(picked) if isinstance(picked, (tuple, list)) else (picked,)
        start = picked[0] if picked else default[0]
        end = picked[1] if len(picked) > 1 else hi
    channels, platforms = data.dimension_values(snap)
    ch = sb.multiselect("Acquisition channel", channels, placeholder="all channels")
    pl = sb.multiselect("Platform", platforms, placeholder="all platforms")
    sb.caption("Filters apply where a mart has the column (date, acquisition_channel, platform); each page says "
               "which. Aggregates count everyone; person-level tables show consenting persons only.")
    return data.Filters(start=start, end=end, channels=tuple(ch), platforms=tuple(pl))


def main() -> None:
    st.set_page_config(page_title="ULM lifecycle dashboard", page_icon=":material/cycle:", layout="wide")
    args = _args()
    nav = st.navigation([st.Page(f"views/{slug}.py", title=title, icon=icon, url_path=slug, default=i == 0)
                         for i, (slug, title, icon) in enumerate(PAGES)])
    path = _snapshot_path(args)
    snap = data.open_snapshot(path)
    if snap is None:
        st.title("ULM lifecycle dashboard")
        st.warning(NO_SNAPSHOT, icon=":material/hourglass_empty:")
        st.caption(f"Looked for `{path}`. The snapshot appears after the first successful publish.")
        st.stop()
    with data.batch(snap):  # one connection for this rerun's cache misses, closed when it ends
        try:
            meta = data.meta(snap)
            filters = _sidebar(snap, meta)
        except duckdb.Error as exc:
            st.title("ULM lifecycle dashboard")
            st.error(f"cannot read the serving snapshot `{path}`: {str(exc).strip().splitlines()[0]}")
            st.stop()
        mlflow_url = st.session_state.get("ulm_mlflow_url") or args.mlflow_url
        airflow_url = st.session_state.get("ulm_airflow_url") or args.airflow_url
        st.sidebar.markdown(f"[MLflow UI]({mlflow_url}) · [Airflow UI]({airflow_url})")
        st.session_state[ui.CTX] = ui.PageContext(snap=snap, filters=filters, meta=meta, mlflow_url=mlflow_url,
                                                  airflow_url=airflow_url)
        nav.run()


main()
