"""A small client of Airflow's REST API (v2, JWT from ``POST /auth/token``) for ``ulm deploy`` and its tests.

Triggers a business day (``logical_date`` null, the day in the conf: every trigger is its own run), waits for
runs, lists task instances and reads task logs, exactly as an operator's script or a CI job would.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from typing import Any

from ulm.core.errors import UlmError

FINISHED = {"success", "failed"}


class ApiError(UlmError):
    def __init__(self, status: int, message: str):
        super().__init__(f"Airflow API {status}: {message}")
        self.status = status


class AirflowApi:
    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        if token is None and username is not None:
            self.token = self.login(username, password or "")

    def login(self, username: str, password: str) -> str:
        out = self._call("POST", "/auth/token", {"username": username, "password": password}, auth=False)
        return out["access_token"]

    def _call(self, method: str, path: str, body: Any = None, *, auth: bool = True, raw: bool = False):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                text = str(json.loads(text).get("detail", text))
            except ValueError:
                pass
            raise ApiError(exc.code, text[:500]) from None
        except OSError as exc:
            raise UlmError(f"Airflow API at {self.base_url} unreachable: {exc}") from None
        if raw:
            return payload.decode("utf-8", "replace")
        return json.loads(payload) if payload else None

    def get(self, path: str, **params) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._call("GET", path + query)

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, as_of: date, run_id: str | None = None, **conf) -> dict:
        """A new run of the business day ``as_of`` (no logical date: a rerun of a day is another run)."""
        body: dict[str, Any] = {"logical_date": None, "conf": {"as_of": as_of.isoformat(), **conf}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", order_by="run_after", limit=100)["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances",
                        limit=500)["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                f"{task_id}/logs/{try_number}?full_content=true&map_index={map_index}")
        out = self._call("GET", path)
        content = out.get("content") if isinstance(out, dict) else out
        if isinstance(content, list):
            return "\n".join(c.get("event", "") if isinstance(c, dict) else str(c) for c in content)
        return str(content or "")

    def wait(self, dag_id: str, run_id: str, timeout: float = 1800, poll: float = 3.0, on_poll=None) -> dict:
        """Poll until the run finished; returns it (UlmError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if on_poll is not None:
                on_poll(run)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise UlmError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(poll)
