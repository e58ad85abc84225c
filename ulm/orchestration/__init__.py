"""Orchestration: the Airflow environment, the DAG tasks, the in-process runner (``ulm run``) and the UIs."""
