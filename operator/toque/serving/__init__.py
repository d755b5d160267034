"""The model server (``toque serve``): verified loading, fast prediction, metrics, sampling.

Modules: ``server`` (startup, exit codes, draining, workers), ``model`` (fetch + digest check
+ predictor), ``forest`` (compiled scikit-learn tree ensembles), ``signature`` and
``payload`` (request validation), ``app`` (ASGI routes), ``metrics`` (Prometheus, names
queried by the operator's canary analysis), ``sampler`` (inputs to S3), ``bins`` (feature
bins the trainer logs and the server's histograms use).
"""
