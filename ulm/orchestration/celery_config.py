"""Celery settings of the deployment's worker (``[celery] celery_config_options`` points here).

Airflow's own defaults (broker, result backend, acks, queues from the ``AIRFLOW__CELERY__*`` settings), plus one
thing: the heavy libraries ULM's tasks import are loaded once in the worker's main process, before Celery forks its
pool. On Linux every Airflow task process is a fork of a pool process (the supervisor forks, it does not exec), so
each task inherits them instead of importing them again: Great Expectations alone takes 5-9 s to import on this
2-core machine, paid by each of the three gate tasks of every run; dbt ~4 s, MLflow ~4 s. Only the worker pays, and
only once, when it starts (the scheduler, which also reads this config to send tasks, imports nothing extra).
"""
from __future__ import annotations

import importlib
import logging
import time

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger("ulm.orchestration.celery")

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)

# what ULM's tasks import on first use (ulm/orchestration/tasks.py), slowest first
PRELOAD = ("great_expectations", "dbt.cli.main", "mlflow", "ulm.ingest", "ulm.privacy.erasure", "ulm.quality.gates",
           "ulm.transform.dbt", "ulm.transform.publish", "ulm.transform.exports", "ulm.orchestration.tasks")


def preload(modules: tuple[str, ...] = PRELOAD) -> dict[str, float]:
    """Import ``modules``; a module that fails to import is logged and left to the task that needs it."""
    seconds: dict[str, float] = {}
    for name in modules:
        start = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the task importing it reports the real error
            log.warning("preload of %s failed (%s); tasks import it themselves", name, exc)
            continue
        seconds[name] = round(time.perf_counter() - start, 2)
    return seconds


@worker_init.connect
def _preload_in_worker(**_kwargs) -> None:
    seconds = preload()
    log.info("ULM worker preloaded %d modules in %.1f s: %s", len(seconds), sum(seconds.values()),
             ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
