"""Process exit codes shared by every Toque entrypoint (``toque train``, ``toque serve``,
``toque data``, ``toque promote|abort|rollback``, ``toque submit``).

The operator keys on them: a TrainingJob's ``podFailurePolicy`` fails the Job at once on
``PERMANENT`` and replaces the pod without counting it on ``TRANSIENT``; the ModelVersion
reconciler stops restarting a serving pod that exits ``PERMANENT``.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
# The user's code (or an unclassified error) failed; the Job's backoffLimit applies.
FAILED: Final = 1
# Retrying cannot help: bad input or spec, missing dataset or model, digest mismatch,
# unimportable entrypoint, an action the resource's state refuses.
PERMANENT: Final = 3
# A dependency (API server, MinIO, MLflow) stayed unreachable: try again later.
# EX_TEMPFAIL from sysexits.h.
TRANSIENT: Final = 75
# ``toque submit`` and ``toque reproduce``: the run trained, but its evaluation gate failed.
GATE_FAILED: Final = 4
# ``toque submit``: it stopped following the run after ``--timeout`` (the run goes on); the
# code ``timeout(1)`` exits with.
TIMED_OUT: Final = 124
