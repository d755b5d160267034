"""Dependency-free helpers shared by every runtime (trainer, server, CLI, operator).

Nothing here imports a third-party package or another ``toque`` package, so the trainer,
the model server and the data store can all depend on it without depending on each other.
"""
