"""Versioned, content-addressed datasets in S3/MinIO (``toque data …`` and the trainer).

``store.DataStore`` is the entry point. ``manifest`` (pure: models, refs, digests),
``schema`` (table columns), ``diff`` and ``packs`` decide; ``s3`` (the one S3 client, over
the ``minio`` package), ``transfer``, ``multipart``, ``fetch`` and ``verify`` do the I/O,
named by ``layout``; ``errors`` says which failures are transient.
"""
