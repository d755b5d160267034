"""A small Kubernetes client over ``kubernetes.client.ApiClient`` that speaks plain dicts.

The handlers call it to read objects, server-side apply children, write status and post
Events. Dicts (not the generated models) keep the decide functions free of client types.
Every request is timed in ``toque_kube_request_duration_seconds{verb,code}`` (code "error"
when no answer came); kopf's own watches and patches go through its own client, not this one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import time
from typing import Any

import kubernetes
import prometheus_client
import urllib3
from kubernetes.client import exceptions as kube_exceptions

from toque.api import constants

ApiException = kube_exceptions.ApiException

REQUEST_DURATION = prometheus_client.Histogram(
    "toque_kube_request_duration_seconds",
    "Duration of the operator's requests to the Kubernetes API, by verb and HTTP status.",
    ["verb", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

_PLURALS = {
    ("batch/v1", "Job"): "jobs",
    ("batch/v1", "CronJob"): "cronjobs",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    (constants.API_VERSION, "TrainingJob"): "trainingjobs",
    (constants.API_VERSION, "ModelVersion"): "modelversions",
    (constants.API_VERSION, "DriftMonitor"): "driftmonitors",
}


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """REST path of a namespaced object (or collection when ``name`` is None)."""
    plural = _PLURALS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def is_not_found(error: Exception) -> bool:
    return isinstance(error, ApiException) and error.status == 404


def is_transient(error: Exception) -> bool:
    """Errors worth a retry: conflicts, throttling, server-side and connection trouble."""
    if isinstance(error, ApiException):
        return error.status in (0, 409, 429) or error.status >= 500
    # urllib3 wraps a refused connection in MaxRetryError, which is not an OSError.
    return isinstance(error, OSError | urllib3.exceptions.HTTPError)


@dataclasses.dataclass
class Kube:
    """Dict-in, dict-out access to the API server."""

    api: kubernetes.client.ApiClient

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster config when running in a pod, else the kubeconfig."""
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(kubernetes.client.ApiClient())

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
        timeout: float = 30,
    ) -> Any:
        """Any REST call by path; JSON in and out, ApiException on a non-2xx answer."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method_, url, headers_, body_, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        started, code = time.monotonic(), "error"
        try:
            response = self.api.call_api(
                method_, url, header_params=headers_, body=body_, _request_timeout=timeout
            )
            response.read()  # type: ignore[no-untyped-call]
            code = str(response.status)
        finally:
            REQUEST_DURATION.labels(method, code).observe(time.monotonic() - started)
        data = response.data or b""
        if not 200 <= response.status < 300:
            raise ApiException(
                status=response.status,
                reason=response.reason,
                body=data.decode("utf-8", "replace"),
            )
        return json.loads(data) if data else {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            result: dict[str, Any] = self.request(
                "GET", resource_path(api_version, kind, namespace, name)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        result = self.request(
            "GET",
            resource_path(api_version, kind, namespace),
            query=[("labelSelector", label_selector)],
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    def list_events(self, namespace: str, uid: str, type_: str) -> list[dict[str, Any]]:
        """Events about the object with ``uid``, oldest first."""
        result = self.request(
            "GET",
            resource_path("v1", "Event", namespace),
            query=[("fieldSelector", f"involvedObject.uid={uid},type={type_}")],
        )
        items: list[dict[str, Any]] = result.get("items") or []
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")))

    def apply(
        self, obj: dict[str, Any], field_manager: str = constants.FIELD_MANAGER, force: bool = False
    ) -> dict[str, Any]:
        """Server-side apply; idempotent, so a retry or a second operator changes nothing."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        result: dict[str, Any] = self.request(
            "PATCH", path, body=obj, content_type="application/apply-patch+yaml", query=query
        )
        return result

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace our status fields with one merge patch on the status subresource."""
        path = resource_path(api_version, kind, namespace, name) + "/status"
        result: dict[str, Any] = self.request(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )
        return result

    def event(
        self,
        involved: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: dt.datetime,
    ) -> None:
        """Post a core/v1 Event about ``involved`` (apiVersion, kind, metadata)."""
        meta = involved["metadata"]
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name'][:200]}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "toque-operator"},
            "reportingComponent": "toque.dev/operator",
            "reportingInstance": "toque-operator",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.request("POST", resource_path("v1", "Event", meta["namespace"]), body=body)
