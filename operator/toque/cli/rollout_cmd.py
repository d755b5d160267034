"""``toque promote|abort|rollback|resume NAME``: manual control of a ModelVersion's rollout.

Each verb merge-patches the ModelVersion's ``toque.dev/action`` annotation to
``<verb>:<token>``; the fresh token makes a repeated verb a new request, since the operator
handles each distinct value once and records it in ``status.lastAction``. ``--wait`` polls
until that happens and prints the phase and message the operator left.

Registered by ``toque.cli.main``; ``request_action`` and ``wait_handled`` are the same steps
for Python callers (the end-to-end tests). Exit codes: 0 done, 1 no such ModelVersion,
2 usage, 3 the API server refused, 4 ``--wait`` timed out, 75 the API server is unreachable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toque.api import constants
from toque.core import exitcodes

if TYPE_CHECKING:
    from toque.clients import kube as kube_client

EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_REFUSED = exitcodes.PERMANENT
EXIT_TIMEOUT = 4
EXIT_TRANSIENT = exitcodes.TRANSIENT

DEFAULT_TIMEOUT = 300.0
POLL_INTERVAL = 1.0
_SA_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_HELP = {
    "promote": "skip the remaining steps and make the version the stable one",
    "abort": "stop the rollout and send all traffic back to the stable version",
    "rollback": "point the stable alias back at the previous version",
    "resume": "continue a paused or aborted rollout",
}


class ModelVersionNotFoundError(Exception):
    """The ModelVersion to act on does not exist."""


def register(subs: Any) -> None:
    for verb in constants.ACTIONS:
        parser = subs.add_parser(verb, help=f"{_HELP.get(verb, verb)} (ModelVersion NAME)")
        parser.add_argument("name", help="the ModelVersion")
        parser.add_argument(
            "-n", "--namespace", help="default: the kubeconfig context's namespace, else default"
        )
        parser.add_argument("--kubeconfig", type=pathlib.Path, help="default: $KUBECONFIG")
        parser.add_argument(
            "--wait", action="store_true", help="wait until the operator has handled it"
        )
        parser.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=DEFAULT_TIMEOUT,
            help=f"seconds --wait waits (default {DEFAULT_TIMEOUT:.0f})",
        )
        parser.set_defaults(func=run, verb=verb)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def action_value(verb: str, now: dt.datetime | None = None) -> str:
    """``<verb>:<token>``; the token is the UTC time to the nanosecond (no colons in it)."""
    if verb not in constants.ACTIONS:
        raise ValueError(f"unknown action {verb!r}; one of {', '.join(constants.ACTIONS)}")
    if now is None:
        nanos = time.time_ns()
        now = dt.datetime.fromtimestamp(nanos // 1_000_000_000, dt.UTC)
        fraction = nanos % 1_000_000_000
    else:
        fraction = now.microsecond * 1000
    return f"{verb}:{now.astimezone(dt.UTC):%Y%m%dT%H%M%S}.{fraction:09d}Z"


def _path(namespace: str, name: str) -> str:
    from toque.clients import kube

    return kube.resource_path(constants.API_VERSION, "ModelVersion", namespace, name)


def request_action(kube: kube_client.Kube, namespace: str, name: str, verb: str) -> str:
    """Write a fresh ``<verb>:<token>`` to the ModelVersion; returns the value written.

    ModelVersionNotFoundError when it does not exist; ApiException for other API errors.
    """
    from toque.clients import kube as kube_module

    value = action_value(verb)
    body = {"metadata": {"annotations": {constants.ANNOTATION_ACTION: value}}}
    try:
        kube.request(
            "PATCH", _path(namespace, name), body=body, content_type="application/merge-patch+json"
        )
    except kube_module.ApiException as error:
        if kube_module.is_not_found(error):
            raise ModelVersionNotFoundError(f"modelversion {namespace}/{name} not found") from None
        raise
    return value


def wait_handled(
    kube: kube_client.Kube,
    namespace: str,
    name: str,
    value: str,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = POLL_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The ModelVersion's status once ``status.lastAction`` equals ``value``.

    TimeoutError after ``timeout`` seconds; ModelVersionNotFoundError if it is deleted.
    """
    deadline = clock() + timeout
    while True:
        obj = kube.get(constants.API_VERSION, "ModelVersion", namespace, name)
        if obj is None:
            raise ModelVersionNotFoundError(f"modelversion {namespace}/{name} not found")
        status: dict[str, Any] = obj.get("status") or {}
        if status.get("lastAction") == value:
            return status
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError(
                f"modelversion {namespace}/{name}: {value} not handled after {timeout:g}s "
                f"(status.lastAction={status.get('lastAction')!r})"
            )
        sleep(min(poll, left))


def default_namespace(kubeconfig: pathlib.Path | None) -> str:
    """The namespace of the kubeconfig's current context, in a pod its own, else default."""
    import kubernetes

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and _SA_NAMESPACE.exists():
        return _SA_NAMESPACE.read_text().strip() or "default"
    try:
        _, current = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None
        )
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    namespace = ((current or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def connect(kubeconfig: pathlib.Path | None) -> kube_client.Kube:
    """A Kube for ``kubeconfig``, else as the operator finds one (in-cluster, kubeconfig)."""
    import kubernetes

    from toque.clients import kube

    if kubeconfig is None:
        return kube.Kube.from_environment()
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return kube.Kube(kubernetes.client.ApiClient(configuration))


def run(args: argparse.Namespace) -> int:
    import kubernetes

    prog = f"toque {args.verb}"
    try:
        namespace = args.namespace or default_namespace(args.kubeconfig)
        client = connect(args.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        print(f"{prog}: no Kubernetes configuration: {error}", file=sys.stderr)
        return EXIT_USAGE
    return execute(client, args, namespace)


def execute(client: kube_client.Kube, args: argparse.Namespace, namespace: str) -> int:
    """The command with a connected client (``run`` minus the configuration)."""
    import urllib3

    from toque.clients import kube

    prog = f"toque {args.verb}"
    try:
        value = request_action(client, namespace, args.name, args.verb)
        print(
            f"modelversion {namespace}/{args.name}: requested {args.verb} "
            f"({constants.ANNOTATION_ACTION}={value})"
        )
        if not args.wait:
            return 0
        status = wait_handled(client, namespace, args.name, value, timeout=args.timeout)
    except ModelVersionNotFoundError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_MISSING
    except TimeoutError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_TIMEOUT
    except kube.ApiException as error:
        print(f"{prog}: {namespace}/{args.name}: {_api_message(error)}", file=sys.stderr)
        return EXIT_TRANSIENT if kube.is_transient(error) else EXIT_REFUSED
    except (OSError, urllib3.exceptions.HTTPError) as error:  # the API server is unreachable
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_TRANSIENT
    print(f"phase: {status.get('phase') or '-'}")
    print(f"message: {status.get('message') or '-'}")
    return 0


def _api_message(error: Exception) -> str:
    import json

    body = getattr(error, "body", None) or ""
    try:
        message = json.loads(body).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or f"HTTP {getattr(error, 'status', '?')} {getattr(error, 'reason', '')}")
