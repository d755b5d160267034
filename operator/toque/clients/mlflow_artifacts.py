"""Reads one artifact of an MLflow run through the tracking server (no mlflow package).

Called by ``handlers.driftmonitor`` for a live version's reference profile
(``toque/feature-bins.json``). It asks the server's ``get-artifact`` endpoint, which serves
the run's artifacts whether the server proxies them (``mlflow-artifacts:/``) or reads its
own store, so the operator never needs the store's credentials.

Errors reuse the registry client's classes, so callers handle MLflow one way:
``RegistryUnavailableError`` (connection trouble, timeouts, 429 and 5xx) is worth a retry;
``RegistryNotFoundError`` means the run or the artifact is missing; any other refusal is a
``RegistryRejectedError``. Messages redact a ``user:pass@`` in the tracking URI.
"""

from __future__ import annotations

import dataclasses

import requests

from toque.clients import mlflow_registry
from toque.core import redact

TIMEOUT = 30
# A profile of a thousand features is a few MB; anything far larger is not one.
MAX_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Artifacts:
    tracking_uri: str

    def __repr__(self) -> str:
        return f"Artifacts(tracking_uri={redact.redact_url(self.tracking_uri)!r})"

    def read(self, run_id: str, path: str) -> bytes:
        """The bytes of ``path`` in the run's artifacts."""
        url = f"{self.tracking_uri.rstrip('/')}/get-artifact"
        params = {"run_id": run_id, "path": path}
        try:
            response = requests.get(url, params=params, timeout=TIMEOUT, stream=True)
            body = response.raw.read(MAX_BYTES + 1, decode_content=True)
        except requests.RequestException as error:
            raise mlflow_registry.RegistryUnavailableError(f"{url}: {error}") from error
        except OSError as error:
            raise mlflow_registry.RegistryUnavailableError(f"{url}: {error}") from error
        status = response.status_code
        if status == 200:
            if len(body) > MAX_BYTES:
                raise mlflow_registry.RegistryRejectedError(
                    "TOO_LARGE", f"artifact {path} of run {run_id} exceeds {MAX_BYTES} bytes"
                )
            return bytes(body)
        text = body[:300].decode("utf-8", "replace")
        if status == 429 or status >= 500:
            # MLflow answers a missing artifact of a proxied store with a 500 naming it.
            if "No such file" in text or "does not exist" in text.lower():
                raise mlflow_registry.RegistryNotFoundError(f"run {run_id} has no {path}")
            raise mlflow_registry.RegistryUnavailableError(f"{url}: HTTP {status}: {text}")
        if status == 404 or "RESOURCE_DOES_NOT_EXIST" in text:
            raise mlflow_registry.RegistryNotFoundError(f"run {run_id} has no {path}: {text}")
        raise mlflow_registry.RegistryRejectedError(f"HTTP_{status}", text)
