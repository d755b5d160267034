"""The model server (``toque serve``): verified loading, fast prediction, metrics, sampling.

Modules: ``server`` (startup, exit codes, draining, workers sharing the model), ``model``
(fetch + digest check + skops allow-list, the fast path of each flavour, class
probabilities), the fast paths: ``forest`` (compiled scikit-learn tree ensembles),
``boosted`` (compiled histogram gradient boosting), ``native`` (any other scikit-learn
model, fed arrays), ``tensor`` (PyTorch, ONNX Runtime), all ``runner``s; ``exact`` (the
load-time check that a fast path answers as pyfunc does), ``batcher`` (micro-batching of
concurrent requests), ``signature`` and ``payload`` (request and feedback validation),
``app`` (ASGI routes, the feedback endpoint; large batches off the event loop), ``metrics``
(Prometheus, names queried by the operator's canary analysis and drift monitor: confidence,
per-group and feedback counters), ``sampler`` (inputs, and feedback rows with their labels,
to S3), ``bins`` (``log_bins`` for code that logs models itself).
Shared with the trainer only through ``toque.core`` (digest, retry, exit codes, bins) and,
for the profile ``log_bins`` writes, ``toque.drift``.
"""
