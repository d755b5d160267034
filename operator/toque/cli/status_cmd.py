"""``toque status [-n NS | -A] [--watch]``: TrainingJobs, ModelVersions and DriftMonitors in
one table, grouped by model (rows from ``toque.workflow.status``).

A ``rich`` table with coloured phases when stdout is a terminal (``rich`` decides, and
honours ``NO_COLOR``); plain ``kubectl``-style columns otherwise, so a pipe or a CI log
gets no escape codes. ``--watch`` redraws every ``--interval`` seconds until Ctrl-C: in
place on a terminal, reprinted under a time stamp otherwise. Exit codes: 0, 3
(``PERMANENT``: no kubeconfig, access refused), 75 (``TRANSIENT``: the API server is
unreachable). Registered by ``toque.cli.main``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from toque.api import constants
from toque.core import exitcodes

if TYPE_CHECKING:
    from toque.clients import kube as kube_client
    from toque.workflow import status

PROG = "toque status"
DEFAULT_INTERVAL = 5.0
_PLURALS = {
    "TrainingJob": "trainingjobs",
    "ModelVersion": "modelversions",
    "DriftMonitor": "driftmonitors",
}
_TONE_STYLE = {"good": "green", "bad": "bold red", "busy": "yellow", "idle": "magenta"}


def register(subs: Any) -> None:
    parser = subs.add_parser(
        "status", help="TrainingJobs, ModelVersions and DriftMonitors in one table, by model"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-n", "--namespace", help="default: the kubeconfig context's namespace, else default"
    )
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="default: $KUBECONFIG")
    parser.add_argument("-w", "--watch", action="store_true", help="redraw until Ctrl-C")
    parser.add_argument(
        "--interval", type=_positive_seconds, default=DEFAULT_INTERVAL,
        help=f"seconds between redraws with --watch (default {DEFAULT_INTERVAL:g})",
    )  # fmt: skip
    parser.set_defaults(func=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def collection(kind: str, namespace: str | None) -> str:
    """REST path of a kind's objects in ``namespace`` (None: in every namespace)."""
    base = f"/apis/{constants.API_VERSION}"
    return f"{base}/namespaces/{namespace}/{_PLURALS[kind]}" if namespace else (
        f"{base}/{_PLURALS[kind]}"
    )  # fmt: skip


def fetch(
    client: kube_client.Kube, namespace: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The TrainingJobs, ModelVersions and DriftMonitors; a kind the cluster lacks (its CRD
    is not installed) counts as none."""
    from toque.clients import kube

    found: list[list[dict[str, Any]]] = []
    for kind in _PLURALS:
        try:
            result = client.request("GET", collection(kind, namespace))
        except kube.ApiException as error:
            if kube.is_not_found(error):
                found.append([])
                continue
            raise
        found.append(list(result.get("items") or []))
    return found[0], found[1], found[2]


def table(rows: Sequence[status.Row], all_namespaces: bool) -> Any:
    """The ``rich`` table of the rows: phases coloured by how they read, a rule between
    models."""
    import rich.box
    import rich.table
    import rich.text

    from toque.workflow import status

    grid = rich.table.Table(box=rich.box.SIMPLE_HEAD, pad_edge=False)
    for name in status.columns(all_namespaces):
        grid.add_column(name, overflow="fold", no_wrap=name != "DETAILS")
    for i, row in enumerate(rows):
        values: list[Any] = list(status.cells(row, all_namespaces))
        values[-3] = rich.text.Text(row.phase, style=_TONE_STYLE[row.tone])
        after = rows[i + 1] if i + 1 < len(rows) else None
        last = after is None or (after.namespace, after.model) != (row.namespace, row.model)
        grid.add_row(*values, end_section=last)
    return grid


def _empty(namespace: str | None) -> str:
    where = f"namespace {namespace}" if namespace else "any namespace"
    return f"no TrainingJobs, ModelVersions or DriftMonitors in {where}"


def run(args: argparse.Namespace) -> int:
    import kubernetes

    from toque.cli import rollout_cmd

    try:
        namespace = None if args.all_namespaces else (
            args.namespace or rollout_cmd.default_namespace(args.kubeconfig)
        )  # fmt: skip
        client = rollout_cmd.connect(args.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        print(f"{PROG}: no Kubernetes configuration: {error}", file=sys.stderr)
        return exitcodes.PERMANENT
    return show(client, namespace, args.watch, args.interval)


def show(
    client: kube_client.Kube,
    namespace: str | None,
    watch: bool = False,
    interval: float = DEFAULT_INTERVAL,
    console: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the table once, or redraw it until Ctrl-C; the exit code."""
    import rich.console
    import urllib3

    from toque.cli import submit_cmd
    from toque.clients import kube
    from toque.workflow import status

    out = console or rich.console.Console(force_terminal=None)
    everywhere = namespace is None

    def render() -> Any:
        rows = status.rows(*fetch(client, namespace))
        if not rows:
            return _empty(namespace)
        return table(rows, everywhere) if out.is_terminal else status.text(rows, everywhere)

    def failed(error: Exception) -> tuple[int, str]:
        if isinstance(error, kube.ApiException) and not kube.is_transient(error):
            message = submit_cmd.api_message(error)
            return exitcodes.PERMANENT, f"{PROG}: the API server refused: {message}"
        return exitcodes.TRANSIENT, f"{PROG}: the API server is unreachable: {error}"

    errors = (kube.ApiException, OSError, urllib3.exceptions.HTTPError)
    if not watch:
        try:
            view = render()
        except errors as error:
            code, message = failed(error)
            print(message, file=sys.stderr)
            return code
        _print(out, view)
        return exitcodes.OK
    try:
        if out.is_terminal:
            _watch_live(out, render, failed, errors, interval, sleep)
        else:
            _watch_plain(out, render, failed, errors, interval, sleep)
    except KeyboardInterrupt:
        pass
    return exitcodes.OK


def _print(out: Any, view: Any) -> None:
    if isinstance(view, str):
        # Plain text goes out as it is: no markup, no highlighting, no wrapping.
        out.file.write(view if view.endswith("\n") else view + "\n")
        out.file.flush()
    else:
        out.print(view)


def _stamp() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _watch_live(
    out: Any,
    render: Callable[[], Any],
    failed: Callable[[Exception], tuple[int, str]],
    errors: tuple[type[Exception], ...],
    interval: float,
    sleep: Callable[[float], None],
) -> None:
    import rich.console
    import rich.live
    import rich.text

    with rich.live.Live(console=out, auto_refresh=False, transient=False) as live:
        while True:
            try:
                view = render()
                if isinstance(view, str):
                    view = rich.text.Text(view)
            except errors as error:  # keep watching: the next round may reach it
                view = rich.text.Text(failed(error)[1], style="red")
            header = rich.text.Text(f"{_stamp()}  every {interval:g}s, Ctrl-C to stop", "dim")
            live.update(rich.console.Group(header, view), refresh=True)
            sleep(interval)


def _watch_plain(
    out: Any,
    render: Callable[[], Any],
    failed: Callable[[Exception], tuple[int, str]],
    errors: tuple[type[Exception], ...],
    interval: float,
    sleep: Callable[[float], None],
) -> None:
    while True:
        try:
            view = render()
        except errors as error:
            view = failed(error)[1]
        _print(out, f"--- {_stamp()}\n{view}")
        sleep(interval)
