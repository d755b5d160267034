"""The MLflow model registry over its REST API (the operator needs no mlflow package).

Called by ``handlers.trainingjob`` (``champion``: the metrics of the model holding an alias,
for the evaluation gate's must-beat-champion rule) and by the ModelVersion handler
(``register``, aliases, lineage tags). Speaks the ``/api/2.0/mlflow`` endpoints of MLflow 3.

Errors say whether a retry can help: ``RegistryUnavailableError`` (connection trouble,
timeouts, 429 and 5xx answers) is transient; ``RegistryRejectedError`` (any other 4xx) is
permanent and carries MLflow's ``error_code``; ``RegistryNotFoundError`` marks a missing run,
model or version where the caller asked for one. Their messages end up in conditions and
Events, so the ``user:pass@`` of a tracking URI is redacted from them (and from ``repr``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any

import requests

from toque.api import trainingjob as tj
from toque.core import redact

TIMEOUT = 10
PAGE_SIZE = 200
UID_TAG = "toque.modelversion_uid"

# `models:/m-<id>` names an MLflow 3 logged model; `models:/<name>/<version>` (or
# `@alias`) a registry entry.
_LOGGED_MODEL = re.compile(r"^models:/(m-[0-9a-zA-Z]+)/?$")
# Artifacts of a logged model live under `<experiment>/models/m-<id>/artifacts`.
_LOGGED_MODEL_ARTIFACTS = re.compile(r"/models/(m-[0-9a-zA-Z]+)/artifacts(/|$)")
_NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


class RegistryError(Exception):
    """Base of the registry client's errors; the message is redacted."""

    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(redact.redact(message))


class RegistryUnavailableError(RegistryError):
    """MLflow could not be reached or answered with a server error (worth a retry)."""

    transient = True


class RegistryRejectedError(RegistryError):
    """MLflow refused the request (a 4xx other than not-found); retrying will not help."""

    def __init__(self, error_code: str, message: str) -> None:
        message = redact.redact(message)
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message


class RegistryNotFoundError(RegistryError):
    """The run, registered model or version asked for does not exist."""


@dataclasses.dataclass(frozen=True)
class Source:
    """What ``model-versions/create`` is given for a model URI."""

    source: str
    run_id: str | None = None
    model_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Registry:
    tracking_uri: str

    def __repr__(self) -> str:
        return f"Registry(tracking_uri={redact.redact_url(self.tracking_uri)!r})"

    def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = f"{self.tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
        try:
            response = requests.request(method, url, params=params, json=body, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise RegistryUnavailableError(f"{url}: {error}") from error
        if response.status_code < 300:
            data: dict[str, Any] = response.json() if response.content else {}
            return data
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        code = str(answer.get("error_code") or f"HTTP_{response.status_code}")
        message = str(answer.get("message") or response.text[:200])
        if response.status_code == 429 or response.status_code >= 500:
            raise RegistryUnavailableError(f"{url}: HTTP {response.status_code} {code}: {message}")
        if code in _NOT_FOUND_CODES:
            raise RegistryNotFoundError(f"{code}: {message}")
        raise RegistryRejectedError(code, message)

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """A GET whose not-found answer is None."""
        try:
            return self._call("GET", path, params=params)
        except RegistryNotFoundError:
            return None

    # -- reading -----------------------------------------------------------------------------

    def champion(self, model: str, alias: str) -> tj.Champion:
        """The version holding ``alias`` and its run's metrics (version None: no holder).

        Any failure is a RegistryUnavailableError: the gate waits on it rather than deciding
        without the champion (``handlers.trainingjob`` catches only that error).
        """
        try:
            found = self._alias(model, alias)
            if not found:
                return tj.Champion(version=None, metrics={})
            version = found.get("model_version") or {}
            metrics: dict[str, float] = {}
            run_id = version.get("run_id")
            if run_id:
                run = self._get("runs/get", {"run_id": run_id}) or {}
                for item in ((run.get("run") or {}).get("data") or {}).get("metrics") or []:
                    metrics[str(item["key"])] = float(item["value"])
        except RegistryRejectedError as error:
            raise RegistryUnavailableError(str(error)) from error
        return tj.Champion(version=str(version.get("version")), metrics=metrics)

    def _alias(self, model: str, alias: str) -> dict[str, Any] | None:
        try:
            return self._get("registered-models/alias", {"name": model, "alias": alias})
        except RegistryRejectedError as error:
            # MLflow 3 answers an unset alias with INVALID_PARAMETER_VALUE "Registered model
            # alias <alias> not found." rather than RESOURCE_DOES_NOT_EXIST.
            if error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in error.message:
                return None
            raise

    def alias_version(self, model: str, alias: str) -> str | None:
        """The version holding ``alias``; None when no version does (or the model is missing)."""
        found = self._alias(model, alias)
        if not found:
            return None
        version = (found.get("model_version") or {}).get("version")
        return str(version) if version is not None else None

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of a run (RegistryNotFoundError when there is no such run)."""
        run = self._call("GET", "runs/get", params={"run_id": run_id}).get("run") or {}
        return _tags((run.get("data") or {}).get("tags"))

    def version(self, model: str, version: str) -> dict[str, Any]:
        """A model version as MLflow returns it (source, run_id, model_id, status, tags…).

        RegistryNotFoundError when it does not exist.
        """
        found = self._call("GET", "model-versions/get", params={"name": model, "version": version})
        result: dict[str, Any] = found.get("model_version") or {}
        return result

    def version_tags(self, model: str, version: str) -> dict[str, str]:
        """The tags of a model version (RegistryNotFoundError when it does not exist)."""
        return _tags(self.version(model, version).get("tags"))

    def versions(self, model: str) -> list[dict[str, Any]]:
        """Every version of ``model``, oldest first (empty when the model is missing)."""
        found = self._search_versions(f"name = '{_quoted(model)}'")
        return sorted(found, key=lambda v: int(v.get("version") or 0))

    def _all_pages(
        self, method: str, path: str, query: dict[str, Any], key: str
    ) -> list[dict[str, Any]]:
        """Every item of a paged search: GET takes the query as params, POST as its body."""
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            page_query = {**query, "page_token": token} if token else dict(query)
            if method == "GET":
                params = {k: str(v) for k, v in page_query.items()}
                page = self._call(method, path, params=params)
            else:
                page = self._call(method, path, body=page_query)
            found += page.get(key) or []
            token = str(page.get("next_page_token") or "")
            if not token:
                return found

    def _search_versions(self, filter_: str) -> list[dict[str, Any]]:
        query = {"filter": filter_, "max_results": PAGE_SIZE}
        return self._all_pages("GET", "model-versions/search", query, "model_versions")

    def _owned_version(self, model: str, owner_uid: str) -> dict[str, Any] | None:
        """The version tagged with ``owner_uid``, searching by tag where the server can."""
        try:
            hits = self._search_versions(
                f"name = '{_quoted(model)}' AND tags.`{UID_TAG}` = '{_quoted(owner_uid)}'"
            )
        except RegistryRejectedError:  # a server without tag filters: page through the model
            hits = self.versions(model)
        owned = [v for v in hits if _tags(v.get("tags")).get(UID_TAG) == owner_uid]
        # Two registrations raced: the oldest one is the answer every later call gives.
        owned.sort(key=lambda v: int(v.get("version") or 0))
        return owned[0] if owned else None

    # -- writing -----------------------------------------------------------------------------

    def source_for(self, model_uri: str, run_id: str | None) -> Source:
        """The ``source``, ``run_id`` and ``model_id`` MLflow accepts for ``model_uri``.

        MLflow checks lineage on create: a ``models:/m-…`` source needs its ``model_id``, a
        ``runs:/`` source the same ``run_id``, an ``mlflow-artifacts:`` source must lie under
        the artifacts of the given run or logged model. ``s3://`` and other stores pass as
        they are (the loader then needs credentials for them).
        """
        if match := _LOGGED_MODEL.match(model_uri):
            return Source(f"models:/{match.group(1)}", run_id, match.group(1))
        if model_uri.startswith("models:/"):  # another registry version: MLflow resolves it
            return Source(model_uri)
        if model_uri.startswith("runs:/"):
            source_run, _, path = model_uri[len("runs:/") :].partition("/")
            # MLflow 3 stores `log_model(name=…)` output as a logged model, not in the run's
            # artifacts; register that model (as `mlflow.register_model` does) when there is one.
            model_id = self._logged_model_of_run(source_run, path.strip("/"))
            if model_id:
                return Source(f"models:/{model_id}", source_run, model_id)
            return Source(model_uri, source_run)
        if model_uri.startswith("mlflow-artifacts:") and (
            match := _LOGGED_MODEL_ARTIFACTS.search(model_uri)
        ):
            return Source(model_uri, run_id, match.group(1))
        return Source(model_uri, run_id)

    def _logged_model_of_run(self, run_id: str, name: str) -> str | None:
        """The newest logged model called ``name`` that the run produced, if any."""
        if not run_id or not name or "/" in name:
            return None
        run = self._get("runs/get", {"run_id": run_id})
        info = ((run or {}).get("run") or {}).get("info") or {}
        if not info.get("experiment_id"):
            return None
        query = {
            "experiment_ids": [str(info["experiment_id"])],
            "filter": f"name = '{_quoted(name)}'",
            "max_results": 100,
        }
        models = self._all_pages("POST", "logged-models/search", query, "models")
        mine = [
            m.get("info") or {}
            for m in models
            if (m.get("info") or {}).get("source_run_id") == run_id
        ]
        mine.sort(key=lambda i: int(i.get("creation_timestamp_ms") or 0))
        return str(mine[-1]["model_id"]) if mine else None

    def register(
        self,
        model: str,
        model_uri: str,
        run_id: str | None,
        tags: dict[str, str],
        owner_uid: str,
    ) -> str:
        """The registry version of ``model_uri`` owned by ``owner_uid``, created if missing.

        Idempotent: a version already tagged ``toque.modelversion_uid=<owner_uid>`` is
        returned (its tags brought up to date) instead of a new one.
        """
        wanted = {**{k: str(v) for k, v in tags.items()}, UID_TAG: owner_uid}
        try:
            self._call("POST", "registered-models/create", body={"name": model})
        except RegistryRejectedError as error:
            if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        existing = self._owned_version(model, owner_uid)
        if existing is not None:
            version = str(existing["version"])
            have = _tags(existing.get("tags"))
            for key, value in wanted.items():
                if have.get(key) != value:
                    self.set_version_tag(model, version, key, value)
            return version
        source = self.source_for(model_uri, run_id)
        body: dict[str, Any] = {
            "name": model,
            "source": source.source,
            "tags": [{"key": k, "value": v} for k, v in wanted.items()],
        }
        if source.run_id:
            body["run_id"] = source.run_id
        if source.model_id:
            body["model_id"] = source.model_id
        created = self._call("POST", "model-versions/create", body=body)
        return str(created["model_version"]["version"])

    def set_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        body = {"name": model, "version": version, "key": key, "value": value}
        self._call("POST", "model-versions/set-tag", body=body)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (moving it from whichever version held it)."""
        body = {"name": model, "alias": alias, "version": version}
        self._call("POST", "registered-models/alias", body=body)

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove ``alias``; nothing to do when no version holds it."""
        with contextlib.suppress(RegistryNotFoundError):
            self._call("DELETE", "registered-models/alias", body={"name": model, "alias": alias})


def _tags(items: Any) -> dict[str, str]:
    """MLflow's ``[{"key": …, "value": …}]`` as a dict."""
    return {str(t["key"]): str(t.get("value", "")) for t in items or []}


def _quoted(value: str) -> str:
    """A value for a single-quoted string in an MLflow search filter."""
    if "'" in value:
        raise RegistryRejectedError("INVALID_PARAMETER_VALUE", f"quote in name {value!r}")
    return value
