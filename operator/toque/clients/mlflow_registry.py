"""Reads the MLflow model registry over its REST API (the operator needs no mlflow package).

Called by ``handlers.trainingjob`` to find the metrics of the model holding an alias, for
the evaluation gate's must-beat-champion rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import requests

from toque.reconcile import gate

TIMEOUT = 10


class RegistryUnavailableError(Exception):
    """MLflow could not be reached or answered with a server error."""


@dataclasses.dataclass(frozen=True)
class Registry:
    tracking_uri: str

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        url = f"{self.tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
        try:
            response = requests.get(url, params=params, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise RegistryUnavailableError(f"{url}: {error}") from error
        if response.status_code == 404 or (
            response.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in response.text
        ):
            return None
        if response.status_code >= 300:
            raise RegistryUnavailableError(
                f"{url}: HTTP {response.status_code} {response.text[:200]}"
            )
        data: dict[str, Any] = response.json()
        return data

    def champion(self, model: str, alias: str) -> gate.Champion:
        """The version holding ``alias`` and its run's metrics (version None: no holder)."""
        found = self._get("registered-models/alias", {"name": model, "alias": alias})
        if not found:
            return gate.Champion(version=None, metrics={})
        version = found.get("model_version") or {}
        metrics: dict[str, float] = {}
        run_id = version.get("run_id")
        if run_id:
            run = self._get("runs/get", {"run_id": run_id}) or {}
            for item in ((run.get("run") or {}).get("data") or {}).get("metrics") or []:
                metrics[str(item["key"])] = float(item["value"])
        return gate.Champion(version=str(version.get("version")), metrics=metrics)
