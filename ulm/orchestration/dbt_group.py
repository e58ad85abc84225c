"""The dbt part of the daily DAG: every model built into the audit schemas (``ULM_DBT_EXECUTION_MODE``).

* ``watcher``: a Cosmos task group. ONE ``dbt build`` (the producer, pool ``ulm_duckdb``,
  never retried) writes DuckDB, and every model is a sensor task in the UI that reads the producer's per-model
  results. The run context reaches dbt exactly as in ``ulm build``: as the environment of ``RunContext.dbt_env``,
  here rendered from the ``context`` task's XCom.
* ``build`` (the default, in-process and in ``ulm deploy``): ONE task ``dbt_audit.dbt_build`` runs the same build as
  ``ulm build`` (retried when its worker dies: the audit schemas are rebuilt from raw, so a rerun is safe); each
  model is an outlet Asset (``dbt://ulm/model/<name>``) that receives an event per successful build carrying
  status, seconds and rows, so the Assets view and the graph show every model. With a real executor each task
  is a process on a worker (~5 s of start-up on 2 cores): 100 sensor tasks cost minutes a day, one task costs one.
* ``local``: Cosmos runs dbt once per model task (slow; for debugging one model).
"""
from __future__ import annotations

from ulm.core import settings as _settings
from ulm.core.context import DBT_CONTEXT_ENV
from ulm.orchestration.airflow_env import POOL, dbt_manifest_path
from ulm.orchestration.tasks import context_field

GROUP_ID = "dbt_audit"
BUILD_TASK_ID = "dbt_build"


def dbt_env_template() -> dict[str, str]:
    """``RunContext.dbt_env`` as Jinja over the ``context`` XCom (the PII key and ULM_PARAMS come from the process)."""
    return {env: context_field(name) for name, env in DBT_CONTEXT_ENV.items()}


def model_assets() -> dict[str, object]:
    """One Asset per dbt model of the manifest (name -> Asset), the outlets of the ``build`` task."""
    import json

    from airflow.sdk import Asset

    manifest = dbt_manifest_path(_settings.settings().data_dir)
    if not manifest.exists():
        return {}
    nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"].values()
    return {n["name"]: Asset(name=f"dbt.ulm.{n['name']}", uri=f"dbt://ulm/model/{n['name']}", group="dbt")
            for n in sorted(nodes, key=lambda n: n["name"]) if n["resource_type"] == "model"}


def dbt_build_group(run):
    """Task group ``dbt_audit`` with the single task ``dbt_build`` (mode ``build``, see the module docstring)."""
    from airflow.sdk import TaskGroup, task

    from ulm.core.context import RunContext
    from ulm.orchestration.tasks import user_errors_fail_fast

    assets = model_assets()

    with TaskGroup(group_id=GROUP_ID, tooltip="dbt build into the audit schemas") as group:
        @task(task_id=BUILD_TASK_ID, pool=POOL, outlets=list(assets.values()),
              doc_md="`dbt build` of every model and data test into the audit schemas (as `ulm build`); one "
                     "Asset event per model built, with status, seconds and rows.")
        @user_errors_fail_fast
        def dbt_build(run: dict, **context) -> dict:
            from ulm.transform.dbt import build, summary_lines

            res = build(RunContext.from_dict(run), progress=True)
            for line in summary_lines(res, slowest=10):
                print(line)
            for node in res["nodes"]:  # the per-model table, in the task's log
                print(f"{node['resource_type'].split('.')[-1].lower():<10} {node['name']:<60} {node['status']:<8} "
                      f"{node['execution_time']:7.2f} s  rows {node['rows_affected'] if node['rows_affected'] is not None else '-'}")
            for node in res["nodes"]:
                asset = assets.get(node["name"]) if node["resource_type"].endswith("model") else None
                if asset is not None:
                    context["outlet_events"][asset].extra = {
                        "status": node["status"], "seconds": round(node["execution_time"], 3),
                        "rows_affected": node["rows_affected"], "as_of": run["as_of"], "run_id": run["run_id"]}
            return {"as_of": res["as_of"], "elapsed_s": res["elapsed_s"], "models": len(res["model_timings"]),
                    "nodes": len(res["nodes"])}

        dbt_build(run)
    return group


def dbt_audit_group(run=None):
    """The dbt part of the daily DAG in the configured mode (see the module docstring, docs/ORCHESTRATION.md);
    ``run`` is the ``context`` task's output (mode ``build`` reads it; Cosmos renders it from XCom)."""
    if _settings.settings().dbt_execution_mode == "build":
        return dbt_build_group(run)
    return _cosmos_group()


def _cosmos_group():
    """Cosmos task group building every model into the audit schemas (modes ``watcher`` and ``local``)."""
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    s = _settings.settings()
    project = s.dbt_project_dir
    manifest = dbt_manifest_path(s.data_dir)
    watcher = s.dbt_execution_mode == "watcher"
    group = DbtTaskGroup(
        group_id=GROUP_ID,
        project_config=ProjectConfig(dbt_project_path=project, install_dbt_deps=False, partial_parse=True,
                                     manifest_path=manifest if manifest.exists() else None),
        profile_config=ProfileConfig(profile_name="ulm", target_name="duckdb",
                                     profiles_yml_filepath=project / "profiles.yml"),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER if watcher else ExecutionMode.LOCAL,
            # dbt in its own process (SUBPROCESS) or in the task process (DBT_RUNNER): docs/ORCHESTRATION.md
            invocation_mode=InvocationMode(s.dbt_invocation_mode),
            # the producer (the one process that writes DuckDB) takes the single pool slot, never retries
            setup_operator_args={"pool": POOL, "retries": 0} if watcher else None,
        ),
        # the manifest from `dbt parse` (ulm run / the image entrypoint refresh it); dbt ls only as fallback
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST if manifest.exists() else LoadMode.DBT_LS,
                                   test_behavior=TestBehavior.AFTER_EACH, emit_datasets=False,
                                   # dbt unit tests test SQL logic on fixtures: CI runs them, daily runs do not
                                   exclude=["resource_type:unit_test"],
                                   # LOCAL: a relationships test must wait for both of its models
                                   should_detach_multiple_parents_tests=not watcher),
        operator_args={
            "env": dbt_env_template(),
            "append_env": True,
            # watcher consumers only read XCom; LOCAL mode runs dbt per task, so it queues on the pool
            **({"poke_interval": 1, "retries": 0, "deferrable": True, "timeout": 6 * 3600} if watcher
               else {"pool": POOL}),
        },
        default_args={"retries": 0},
    )
    if watcher and s.sequential_tasks:
        _sequential_watchers(group)
    return group


def _sequential_watchers(group) -> None:
    """Under ``ulm run`` (``dag.test``: one task at a time) no sensor may start before the producer.

    In a task group, Cosmos starts the root watcher sensors next to the producer so that, with a real
    executor, they sense while it builds. Run one at a time, a sensor picked first would wait forever for a
    producer that cannot start; so the root sensors follow the producer and read its per-model results once
    it is done. ``all_done_min_one_success``: after a failed build a sensor still reports its own model's
    failure, but when the producer never ran (an upstream gate failed) the sensors do not run either.
    """
    producer = group.get_child_by_label("dbt_producer_watcher")
    members = {t.task_id for t in group.iter_tasks()}
    for task in group.iter_tasks():
        if task is producer or task.task_id == f"{producer.task_id}_done":
            continue
        if not (task.upstream_task_ids & members):
            producer >> task
            task.trigger_rule = "all_done_min_one_success"
