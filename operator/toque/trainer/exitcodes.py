"""Exit codes of ``toque train``; the Job's podFailurePolicy keys on them."""

OK = 0
USER_CODE_FAILED = 1
# Retrying cannot help: missing dataset, unimportable entrypoint, invalid run spec.
PERMANENT = 3
# A dependency (MinIO, MLflow) stayed unreachable: the Job replaces the pod without
# counting it against backoffLimit (EX_TEMPFAIL from sysexits.h).
TRANSIENT = 75
