"""Pure builders of the Kubernetes objects Toque owns (no I/O, no kopf)."""
