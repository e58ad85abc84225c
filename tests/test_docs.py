"""`ulm docs` in one command, offline: dbt's docs site with the project overview, the GX data docs by business day.

On a small warehouse built and published through write-audit-publish (so the gates wrote their data docs), `ulm docs`
writes the dbt site and a copy of the GX docs; no page loads a stylesheet or script from the internet. A missing PII
key is one line naming ULM_PII_KEY (it used to surface as "ulm_hmac_sha256 already exists").
"""
from __future__ import annotations

import json
import re
import socket
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ulm.cli import main
from ulm.core import settings
from ulm.core.context import RunContext

DAY = date(2025, 12, 31)
EXTERNAL = re.compile(r"""<(?:link\b[^>]*\bhref|script\b[^>]*\bsrc)=["']?(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    from ulm.generate import generate
    from ulm.ingest import ingest_dir
    from ulm.transform.wap import build_and_publish

    tmp = tmp_path_factory.mktemp("docs")
    landing, wh, data = tmp / "landing", tmp / "wh.duckdb", tmp / "data"
    generate(landing, persons=300, days=40, end_date=DAY, seed=9, progress=False)
    ingest_dir(landing, wh, progress=False)
    build_and_publish(RunContext.create(as_of=DAY, warehouse=wh).with_(data_dir=data), progress=False)
    return {"tmp": tmp, "wh": wh, "data": data}


def _model_description(model: str) -> str:
    for path in (settings.dbt_project_dir() / "models").rglob("_models.yml"):
        for m in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            if m["name"] == model:
                return " ".join(m["description"].split())
    raise AssertionError(f"{model} has no description")


def _external(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*.html") if EXTERNAL.search(p.read_text())]


@pytest.mark.slow
def test_ulm_docs_writes_dbt_and_gx_docs_that_render_offline(built, monkeypatch) -> None:
    from ulm.quality.docs_offline import make_offline

    monkeypatch.setenv("ULM_DATA_DIR", str(built["data"]))
    out = built["tmp"] / "docs"
    result = CliRunner().invoke(main, ["--warehouse", str(built["wh"]), "docs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"docs as of {DAY}" in result.output  # the as-of day of the last publish (audit.publish_log)

    page = (out / "dbt" / "index.html").read_text()
    assert "ULM: user lifecycle management" in page and "Reading the lineage graph" in page  # models/overview.md
    assert json.dumps(_model_description("mart_kpi_daily"))[1:-1] in page
    assert '"send_anonymous_usage_stats": false' in page  # no tracker script fetched from a CDN
    assert not EXTERNAL.search(page)

    gx_index = (out / "gx" / "index.html").read_text()
    assert f"business day {DAY}" in gx_index and "marts_invariants.gmv" in gx_index
    assert "bootstrapTable(" not in gx_index  # drawn as plain HTML, not by a CDN script
    assert (out / "gx" / "static" / "styles" / "ulm-offline.css").exists()
    assert _external(out / "gx") == [] and _external(built["data"] / "docs" / "gx") == []
    runs = [p.name for p in (built["data"] / "docs" / "gx" / "validations").glob("*/*/*")]
    assert runs and set(runs) <= {f"{DAY} staging", f"{DAY} marts"}  # GX runs are named by business day
    assert "dbt/index.html" in (out / "index.html").read_text()

    stored = next((built["data"] / "gx").rglob(f"{DAY} marts/*/*.json"))
    assert json.loads(stored.read_text())["meta"]["ulm_run_id"].startswith("cli__")  # the run id stays with it

    again = make_offline(built["data"] / "docs" / "gx")  # idempotent: every page already processed
    assert again["pages"] == 0 and again["skipped"] > 0


def test_docs_without_a_key_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ULM_PII_KEY", raising=False)
    monkeypatch.delenv("DBT_ENV_SECRET_ULM_PII_KEY", raising=False)
    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path / "data"))  # no demo key file there either
    result = CliRunner().invoke(main, ["--warehouse", str(tmp_path / "wh.duckdb"), "docs",
                                       "--out", str(tmp_path / "docs")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ULM_PII_KEY is not set"), result.stderr
    assert "already exists" not in result.output


def test_hashing_plugin_without_a_key_reports_the_key_not_the_registration(monkeypatch) -> None:
    """What dbt hit without a key: the cursor probe called the stand-in UDF, took its error for "not registered",
    and re-registering failed with "ulm_hmac_sha256 already exists". The probe now only looks the function up."""
    import duckdb

    from ulm.privacy.hashing import UDF_NAME, Plugin

    monkeypatch.delenv("ULM_PII_KEY", raising=False)
    monkeypatch.delenv("DBT_ENV_SECRET_ULM_PII_KEY", raising=False)
    plugin = Plugin("ulm.privacy.hashing", {})
    con = duckdb.connect()
    plugin.configure_connection(con)
    cursor = con.cursor()
    plugin.configure_cursor(cursor)  # used to raise CatalogException "... already exists"
    with pytest.raises(duckdb.Error, match="PII key missing"):
        cursor.execute(f"select {UDF_NAME}('x')").fetchall()
    other = duckdb.connect().cursor()  # a cursor that does not see the UDF gets it registered
    plugin.configure_cursor(other)
    assert other.execute("select count(*) from duckdb_functions() where function_name = ?",
                         [UDF_NAME]).fetchall() == [(1,)]


def test_ui_commands_bind_locally_and_a_taken_port_is_named() -> None:
    from ulm.core.errors import UlmError
    from ulm.orchestration import ui

    dash = ui.dashboard_command(8501, Path("/d/serving.duckdb"), mlflow_url="http://localhost:5000",
                                airflow_url="http://localhost:8080/dags/ulm_daily")
    assert dash[1:4] == ["-m", "streamlit", "run"] and dash[4].endswith("ulm/dashboard/app.py")
    assert dash[dash.index("--server.address") + 1] == "127.0.0.1"
    assert dash[dash.index("--") + 1:dash.index("--") + 3] == ["--snapshot", "/d/serving.duckdb"]
    docs = ui.docs_command(8081, Path("/d/docs"))
    assert docs[1:] == ["-m", "http.server", "8081", "--bind", "127.0.0.1", "--directory", "/d/docs"]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(UlmError, match=f"port {port} \\(Docs\\) is in use.*--docs-port"):
            ui._check_ports({"Docs": port})
