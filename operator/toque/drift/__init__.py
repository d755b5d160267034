"""Drift monitoring: reference profiles, bucket counts, statistics, checks and reports.

``profile.build_profile`` summarises the reference once (buckets, counts, calibration);
``current.count`` counts current rows in the same buckets; ``check.check`` judges them with
``stats`` into a ``types.Report``, which ``report`` renders. ``sources`` reads references
and current rows (files, datasets, MLflow runs, the model server's samples) for the
``toque drift`` CLI. Pure numpy/scipy/pandas except ``sources``.
"""
