#!/usr/bin/env bash
# Container entrypoint: dbt needs the PII key under its secret name; the DAG renders its dbt tasks from the
# manifest, so `dbt parse` refreshes it (fast with partial parsing) before the service starts.
set -euo pipefail
: "${ULM_PII_KEY:?set ULM_PII_KEY (e.g. in .env: ULM_PII_KEY=$(openssl rand -hex 32))}"
export DBT_ENV_SECRET_ULM_PII_KEY="${ULM_PII_KEY}"
mkdir -p "${ULM_DATA_DIR:-/data}"
if [[ "${ULM_DBT_PARSE:-true}" == "true" ]]; then
  dbt parse --project-dir /opt/ulm/dbt_project --profiles-dir /opt/ulm/dbt_project \
    --target-path "${ULM_DATA_DIR:-/data}/dbt/target" --log-path "${ULM_DATA_DIR:-/data}/dbt/logs" --quiet \
    || echo "warning: dbt parse failed; the DAG falls back to dbt ls" >&2
fi
exec "$@"
