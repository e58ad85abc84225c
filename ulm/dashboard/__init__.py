"""The analysts' lifecycle dashboard (``ulm dashboard``, docs/DASHBOARD.md): a Streamlit app on the serving snapshot.

It reads only ``<data dir>/serving/serving.duckdb`` (:mod:`ulm.transform.serving`), never the pipeline's warehouse,
so it blocks no run. :mod:`ulm.dashboard.data` is the only place that opens the snapshot or holds SQL; the page
scripts in ``views/`` only lay out what it returns (not ``pages/``: Streamlit would run a script there on its own,
without the entry script); :mod:`ulm.dashboard.app` is the entry (sidebar, snapshot, filters, navigation).
"""
from __future__ import annotations

from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"

# slug (views/<slug>.py and URL path), title, icon; in navigation order
PAGES: tuple[tuple[str, str, str], ...] = (
    ("lifecycle", "Lifecycle", ":material/cycle:"),
    ("acquisition", "Acquisition and retention", ":material/filter_alt:"),
    ("kpis", "KPIs", ":material/speed:"),
    ("value", "Value", ":material/diamond:"),
    ("channels", "Channels", ":material/campaign:"),
    ("community", "Community and referral", ":material/groups:"),
    ("interventions", "Interventions", ":material/notifications_active:"),
    ("models", "Models and quality", ":material/model_training:"),
)

DEFAULT_MLFLOW_URL = "http://localhost:5000"
DEFAULT_AIRFLOW_URL = "http://localhost:8080/dags/ulm_daily"
NO_SNAPSHOT = "no serving snapshot yet: run `ulm build --as-of DAY` or `make demo`"
