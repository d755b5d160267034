"""Versioned, content-addressed datasets in S3/MinIO (``toque data …`` and the trainer).

``store.DataStore`` is the entry point; ``manifest`` holds the pure data model and digests,
``diff`` compares versions, ``errors`` classifies failures as transient or permanent.
"""
