"""Transformation: the dbt runner, write-audit-publish and the audience export."""
