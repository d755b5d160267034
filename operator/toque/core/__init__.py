"""Dependency-free helpers shared by every runtime (trainer, server, CLI, operator).

Nothing here imports a third-party package or another ``toque`` package (an import-linter
contract and ``tests/unit/test_core_layout.py`` hold it to that), so the trainer, the model
server and the data store can all depend on it without depending on each other.

Modules: ``exitcodes`` (what every entrypoint exits with), ``digest`` (model digests),
``retry`` (backoff within a budget), ``transient`` (retry-worthy errors, by type and HTTP
status), ``redact`` (credentials out of messages and logs), ``bins`` (the feature-bins
artifact), ``trusted_types`` (the skops allow-list).
"""
