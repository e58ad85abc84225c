"""The run context: what one run works on, built once and passed down.

A :class:`RunContext` is immutable. The CLI builds it from its options and the settings
(:meth:`RunContext.create`); a DAG run builds it from its params in its first task and every later task reads
it back (:meth:`RunContext.from_dict`). Everything below takes the context (or the one field it needs) as an
argument and never looks at the environment for it.

dbt receives the context through :meth:`RunContext.dbt_env`, its only channel: environment variables that the
macros read with ``ulm_context(name)`` (and ``as_of_date()``). The as-of day is read at execution time only, so
a new day does not invalidate dbt's partial parse.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ulm.core import settings as _settings
from ulm.core.errors import UlmError

TARGETS = ("duckdb", "postgres", "spark")  # dbt outputs of dbt_project/profiles.yml (issue #15)
AUDIT_PREFIX = "audit_"  # schema prefix of a write-audit-publish build (audit_staging, audit_intermediate, ...)

# the environment variables dbt reads (dbt_project/macros/core_params.sql and profiles.yml)
DBT_CONTEXT_ENV = {
    "as_of": "ULM_AS_OF",
    "schema_prefix": "ULM_SCHEMA_PREFIX",
    "run_id": "ULM_RUN_ID",
    "target": "ULM_TARGET",
    "warehouse": "ULM_WAREHOUSE",
}


def new_run_id(kind: str = "cli") -> str:
    """``<kind>__<UTC timestamp>_<random>``: sortable and unique."""
    return f"{kind}__{datetime.now(timezone.utc):%Y%m%dT%H%M%S}_{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunContext:
    """As-of day, warehouse, target, schema prefix, run id and directories of one run."""

    warehouse: Path
    data_dir: Path
    landing_dir: Path
    as_of: date | None = None
    target: str = "duckdb"
    schema_prefix: str = ""
    run_id: str = field(default_factory=new_run_id)
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UlmError(f"target {self.target!r}: unknown (known: {', '.join(TARGETS)})")

    @classmethod
    def create(cls, *, as_of: date | None = None, warehouse: Path | None = None, landing_dir: Path | None = None,
               schema_prefix: str = "", run_id: str | None = None, target: str = "duckdb") -> RunContext:
        """A context from explicit values, the rest from the settings."""
        s = _settings.settings()
        return cls(warehouse=Path(warehouse or s.warehouse).resolve(), data_dir=s.data_dir,
                   landing_dir=Path(landing_dir or s.landing_dir).resolve(), as_of=as_of, target=target,
                   schema_prefix=schema_prefix, run_id=run_id or new_run_id(), params=_settings.params())

    def with_(self, **changes: Any) -> RunContext:
        """A copy with some fields changed (the context itself never changes)."""
        return replace(self, **changes)

    def require_as_of(self) -> date:
        if self.as_of is None:
            raise UlmError("this step needs an as-of business day (--as-of YYYY-MM-DD)")
        return self.as_of

    def param(self, name: str) -> Any:
        if name not in self.params:
            raise KeyError(f"unknown parameter {name!r}: add it to vars.ulm in dbt_project/dbt_project.yml")
        return self.params[name]

    # -- schemas ------------------------------------------------------------------------------------------
    def schema(self, layer: str) -> str:
        """Where this run's dbt build writes ``layer`` (staging / intermediate / marts)."""
        return f"{self.schema_prefix}{layer}"

    # -- the one channel to dbt -----------------------------------------------------------------------------
    def dbt_env(self) -> dict[str, str]:
        """Environment variables carrying this context into dbt (the PII key is added by the dbt runner)."""
        env = {
            DBT_CONTEXT_ENV["schema_prefix"]: self.schema_prefix,
            DBT_CONTEXT_ENV["run_id"]: self.run_id,
            DBT_CONTEXT_ENV["target"]: self.target,
            DBT_CONTEXT_ENV["warehouse"]: str(self.warehouse),
            _settings.PARAMS_ENV: json.dumps(_settings.param_overrides(), sort_keys=True),
        }
        if self.as_of is not None:
            env[DBT_CONTEXT_ENV["as_of"]] = self.as_of.isoformat()
        return env

    # -- serialisation (XCom, child processes) ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("params")
        out.update(warehouse=str(self.warehouse), data_dir=str(self.data_dir), landing_dir=str(self.landing_dir),
                   as_of=self.as_of.isoformat() if self.as_of else None)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunContext:
        as_of = data.get("as_of")
        return cls(warehouse=Path(data["warehouse"]), data_dir=Path(data["data_dir"]),
                   landing_dir=Path(data["landing_dir"]), as_of=date.fromisoformat(as_of) if as_of else None,
                   target=data.get("target", "duckdb"), schema_prefix=data.get("schema_prefix", ""),
                   run_id=data["run_id"], params=_settings.params())
