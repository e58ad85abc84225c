"""Configuration of the real deployment that needs no running service (the deployment itself:
tests/test_deployment.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from ulm.orchestration import celery_config


def test_worker_config_is_airflows_plus_a_preload(tmp_path) -> None:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    assert celery_config.CELERY_CONFIG == DEFAULT_CELERY_CONFIG
    assert "great_expectations" in celery_config.PRELOAD and "dbt.cli.main" in celery_config.PRELOAD
    # a module that cannot be imported is left to the task that needs it, the others are loaded
    out = celery_config.preload(("json", "ulm_no_such_module_anywhere"))
    assert list(out) == ["json"]


def test_deploy_env_points_celery_at_it_and_airflow_resolves_it(tmp_path, monkeypatch) -> None:
    from ulm.orchestration import deploy

    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path))
    lay = deploy.layout(tmp_path)
    sec = deploy.load_secrets(lay, create=True)
    env = deploy.deploy_env(lay, sec)
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "ulm.orchestration.celery_config.CELERY_CONFIG"
    # what the worker does at start: Airflow's config imports the dict; the worker_init signal preloads
    code = ("import json, sys; from airflow.configuration import conf; "
            "c = conf.getimport('celery', 'celery_config_options'); "
            "print(json.dumps({'broker': c['broker_url'][:8], 'queue': c['task_default_queue'], "
            "'gx': 'great_expectations' in sys.modules}))")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    # the scheduler reads the same config to send tasks: it must not pay for the preload
    assert got == {"broker": "redis://", "queue": "default", "gx": False}
