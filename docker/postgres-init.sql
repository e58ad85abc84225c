-- One Postgres for both metadata stores: Airflow (database `airflow`, created by POSTGRES_DB) and MLflow.
CREATE DATABASE mlflow OWNER ulm;
GRANT ALL PRIVILEGES ON DATABASE mlflow TO ulm;
