"""The I/O layer: thin wrappers over the Kubernetes API (and later MLflow, S3, Prometheus)."""
