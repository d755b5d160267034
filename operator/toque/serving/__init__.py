"""The model server (``toque serve``): verified loading, fast prediction, metrics, sampling.

Modules: ``server`` (startup, exit codes, draining, workers), ``model`` (fetch + digest check
+ skops allow-list + predictor), ``forest`` (compiled scikit-learn tree ensembles),
``signature`` and ``payload`` (request validation), ``app`` (ASGI routes; large batches off
the event loop), ``metrics`` (Prometheus, names queried by the operator's canary analysis),
``sampler`` (inputs to S3), ``bins`` (``log_bins`` for code that logs models itself).
Shared with the trainer only through ``toque.core`` (digest, retry, exit codes, bins).
"""
