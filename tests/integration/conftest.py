"""Integration tests use the session fixtures of tests/conftest.py (MinIO, MLflow)."""
