"""``toque submit [PROJECT_DIR]``: train a project's current revision on the cluster.

Pushes the code snapshot (as ``toque code push``) and each declared dataset folder (as
``toque data push``: identical content stores nothing new), creates the project's
TrainingJob pinned to what was pushed under a fresh name, and follows it until it ends: a
live panel on a terminal, one plain line per change otherwise (CI logs). Progress goes to
stderr; stdout gets the TrainingJob's name alone, once it is created, for scripts.

Exit codes (``toque.core.exitcodes``): 0 trained and gate passed (or no gate), 4
``GATE_FAILED``, 1 ``FAILED`` (the run failed or was deleted: the status message and the
last Events are printed), 124 ``TIMED_OUT`` (the run goes on), 3 ``PERMANENT`` (no project,
no kubeconfig, an invalid TrainingJob, the API server refused), 75 ``TRANSIENT`` (the cluster
or the store is unreachable). Registered by ``toque.cli.main``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from toque.api import constants
from toque.core import exitcodes

if TYPE_CHECKING:
    from toque.clients import kube as kube_client
    from toque.workflow import project as projects

PROG = "toque submit"
DEFAULT_TIMEOUT = 3600.0
POLL_INTERVAL = 2.0
# How long the API server may stay unreachable while following before we give up.
UNREACHABLE_GRACE = 60.0
FIELD_MANAGER = "toque-submit"
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


class SubmitError(Exception):
    """Input or a server answer that retrying cannot fix; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = exitcodes.PERMANENT) -> None:
        super().__init__(message)
        self.code = code


def register(subs: Any) -> None:
    parser = subs.add_parser(
        "submit",
        help="push a project's code and changed data, run its TrainingJob and follow it",
    )
    parser.add_argument(
        "project", nargs="?", type=pathlib.Path, default=pathlib.Path("."),
        help="the project folder (default: the current one)",
    )  # fmt: skip
    parser.add_argument(
        "-n", "--namespace",
        help="default: the project's, else the kubeconfig context's, else default",
    )  # fmt: skip
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="default: $KUBECONFIG")
    parser.add_argument("--name", help="the TrainingJob's name (default: <name>-<rev>-<time>)")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="override a param of the TrainingJob (repeatable; VALUE read as YAML)",
    )  # fmt: skip
    parser.add_argument(
        "--tag", action="append", default=[], metavar="TAG",
        help="also move TAG on the pushed code and datasets (repeatable; default: none, so a "
        "branch's submission never moves the latest a DriftMonitor retrains on)",
    )  # fmt: skip
    parser.add_argument(
        "--no-wait", dest="wait", action="store_false", help="exit once the run is created"
    )
    parser.add_argument(
        "--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT,
        help=f"seconds to follow the run (default {DEFAULT_TIMEOUT:.0f}); the run goes on",
    )  # fmt: skip
    parser.add_argument("--interval", type=_positive_seconds, default=POLL_INTERVAL,
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.set_defaults(func=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import urllib3

    from toque.clients import kube
    from toque.data import errors

    try:
        return _submit(args)
    except SubmitError as error:
        _say(f"{PROG}: {error}")
        return error.code
    except errors.DataError as error:
        _say(f"{PROG}: the store: {' '.join(str(error).split())}")
        return exitcodes.TRANSIENT if error.transient else exitcodes.PERMANENT
    except kube.ApiException as error:
        _say(f"{PROG}: the API server: {api_message(error)}")
        return exitcodes.TRANSIENT if kube.is_transient(error) else exitcodes.PERMANENT
    except (OSError, urllib3.exceptions.HTTPError) as error:
        _say(f"{PROG}: unreachable: {error}")
        return exitcodes.TRANSIENT


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the command checked before touching the cluster or the store."""

    project: projects.Project
    template: dict[str, Any]
    params: dict[str, Any]


def prepare(args: argparse.Namespace, now: dt.datetime) -> Prepared:
    """The project, its TrainingJob and the params, checked; SubmitError on bad input. The
    TrainingJob is validated with placeholder digests so nothing is pushed for a bad one."""
    from toque.workflow import project as projects
    from toque.workflow import submit

    try:
        project = projects.load(args.project)
        params = submit.parse_params(args.param)
        template = submit.read_template(project)
    except (ValueError, OSError) as error:
        raise SubmitError(str(error)) from None
    trial = submit.manifest(
        project,
        "0" * 40,
        f"{project.code}@{_PLACEHOLDER_DIGEST}",
        {d.name: f"{d.name}@{_PLACEHOLDER_DIGEST}" for d in project.datasets},
        params,
        now,
        name=args.name,
        template=template,
    )
    _check(trial)
    return Prepared(project, template, params)


def _check(body: dict[str, Any]) -> None:
    from toque.workflow import submit

    problems = submit.validate(body)
    if problems:
        raise SubmitError("the TrainingJob is invalid:\n" + "\n".join(f"  {p}" for p in problems))


def _submit(args: argparse.Namespace) -> int:
    import kubernetes

    from toque.cli import rollout_cmd
    from toque.workflow import submit

    now = dt.datetime.now(dt.UTC)
    ready = prepare(args, now)
    project = ready.project
    try:
        namespace = (
            args.namespace or project.namespace or rollout_cmd.default_namespace(args.kubeconfig)
        )
        client = rollout_cmd.connect(args.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise SubmitError(f"no Kubernetes configuration: {error}") from None
    probe(client, namespace)

    code = push_code(project, args.tag)
    datasets = push_datasets(project, ready.template, args.tag)
    body = submit.manifest(
        project,
        code.commit,
        code.result.ref,
        datasets,
        ready.params,
        now,
        name=args.name,
        namespace=namespace,
        template=ready.template,
    )
    _check(body)
    created = create(client, body)
    name = created["metadata"]["name"]
    _say(f"trainingjob {namespace}/{name} created (revision {code.commit[:12]})")
    print(name, flush=True)
    if not args.wait:
        return exitcodes.OK
    return follow(client, namespace, name, args.timeout, args.interval)


def probe(client: kube_client.Kube, namespace: str) -> None:
    """Fail before any upload when the API server is unreachable or lacks the CRD."""
    from toque.clients import kube

    try:
        client.request(
            "GET",
            kube.resource_path(constants.API_VERSION, "TrainingJob", namespace),
            query=[("limit", "1")],
        )
    except kube.ApiException as error:
        if kube.is_not_found(error):
            raise SubmitError(
                f"the cluster has no TrainingJob resource ({constants.API_VERSION}): "
                "is Toque installed?"
            ) from None
        raise


def push_code(project: projects.Project, tags: list[str]) -> Any:
    """The project's committed files stored as ``project.code``, moving only ``tags``; a
    ``code_cmd.Pushed``."""
    from toque.cli import code_cmd

    try:
        pushed = code_cmd.push(project.root, project.code, tags=tuple(tags))
    except ValueError as error:
        raise SubmitError(f"code snapshot: {error}") from None
    if pushed.dirty:
        _say(
            f"code: uncommitted changes are not in the snapshot; it holds commit "
            f"{pushed.commit[:12]}"
        )
    state = "unchanged" if pushed.result.reused else "new version"
    files = len(pushed.result.manifest.files)
    _say(f"code: {pushed.result.ref} ({state}; git:{pushed.commit[:12]}, {files} files)")
    return pushed


def _has_files(path: pathlib.Path) -> bool:
    """Data to push: a file, or a folder with a file that is not a dotfile (a checkout of a
    scaffolded project has only ``data/raw/.gitkeep``: that is no dataset)."""
    if path.is_file():
        return True
    return path.is_dir() and any(
        p.is_file() and not p.name.startswith(".") for p in path.rglob("*")
    )


def push_datasets(
    project: projects.Project, template: dict[str, Any], tags: list[str]
) -> dict[str, str]:
    """Dataset name -> pinned reference: each declared folder pushed (identical content is
    stored once: "unchanged"); a folder that is absent here (data is not in git, so a CI
    checkout has none) pins the version the TrainingJob names, else ``latest``."""
    from toque.data import store
    from toque.workflow import submit

    if not project.datasets:
        return {}
    data = store.DataStore.from_env(progress=sys.stderr.isatty())
    named = {
        submit.dataset_name(str(d.get("ref"))): str(d.get("ref"))
        for d in (template.get("spec") or {}).get("datasets") or []
        if isinstance(d, dict) and d.get("ref")
    }
    pinned: dict[str, str] = {}
    for dataset in project.datasets:
        path = project.path(dataset.path)
        if _has_files(path):
            result = data.push(path, dataset.name, tags=tuple(tags))
            state = (
                "unchanged"
                if result.reused
                else f"new version, {result.uploaded_files} files uploaded"
            )
            _say(f"dataset {dataset.name}: {result.ref} ({state})")
            pinned[dataset.name] = result.ref
        else:
            ref = named.get(dataset.name, dataset.name)
            resolved = data.resolve(ref)
            _say(f"dataset {dataset.name}: no files in {path}; using {ref} = {resolved.pinned}")
            pinned[dataset.name] = resolved.pinned
    return pinned


def create(client: kube_client.Kube, body: dict[str, Any]) -> dict[str, Any]:
    """POST the TrainingJob (a create, so no client-side last-applied annotation, and an
    existing run of the same name is never changed)."""
    from toque.clients import kube

    meta = body["metadata"]
    try:
        created: dict[str, Any] = client.request(
            "POST",
            kube.resource_path(constants.API_VERSION, "TrainingJob", meta["namespace"]),
            body=body,
            content_type="application/json",
            query=[("fieldManager", FIELD_MANAGER)],
        )
    except kube.ApiException as error:
        if error.status == 409:
            raise SubmitError(
                f"trainingjob {meta['namespace']}/{meta['name']} exists already; "
                "give another --name"
            ) from None
        if error.status in (400, 403, 422):
            raise SubmitError(
                f"the API server refused the TrainingJob: {api_message(error)}"
            ) from None
        raise
    return created


def api_message(error: Exception) -> str:
    """The API server's message (and field causes) from an ApiException."""
    body = getattr(error, "body", None) or ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict) or not data.get("message"):
        return f"HTTP {getattr(error, 'status', '?')} {getattr(error, 'reason', '')}".strip()
    return str(data["message"])


# -- following the run ------------------------------------------------------------------------


class Display:
    """Plain lines on stderr, each with the seconds since the run was created."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def stamp(self) -> str:
        return f"[{self.clock() - self.started:6.0f}s]"

    def update(
        self, body: dict[str, Any] | None, pods: Sequence[dict[str, Any]], lines: list[str]
    ) -> None:
        for line in lines:
            _say(f"{self.stamp()} {line}")

    def note(self, line: str) -> None:
        _say(line)


class LiveDisplay(Display):
    """A ``rich`` live panel of the run's state, the change lines scrolling above it."""

    def __init__(self, console: Any, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        import rich.live

        self.console = console
        self.live = rich.live.Live(console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> Display:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(
        self, body: dict[str, Any] | None, pods: Sequence[dict[str, Any]], lines: list[str]
    ) -> None:
        import rich.markup

        for line in lines:
            self.live.console.print(f"[dim]{self.stamp()}[/dim] {rich.markup.escape(line)}")
        self.live.update(panel(body, pods, self.clock() - self.started))

    def note(self, line: str) -> None:
        self.live.console.print(line, markup=False, highlight=False)


_PHASE_STYLE = {"Succeeded": "green", "Failed": "red", "Running": "cyan", "Suspended": "magenta"}


def panel(body: dict[str, Any] | None, pods: Sequence[dict[str, Any]], elapsed: float) -> Any:
    """The live panel: phase, pod, conditions, metrics, gate and ModelVersion."""
    import rich.markup
    import rich.panel
    import rich.table

    from toque.api import trainingjob as tj
    from toque.reconcile import kubestatus

    esc = rich.markup.escape
    status = kubestatus.parse(tj.TrainingJobStatus, (body or {}).get("status"))
    grid = rich.table.Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    phase = status.phase or "Pending"
    grid.add_row("phase", f"[{_PHASE_STYLE.get(phase, 'yellow')}]{phase}[/]")
    if status.message:
        grid.add_row("message", esc(status.message))
    for pod in pods:
        grid.add_row("pod", esc(str((pod.get("metadata") or {}).get("name"))))
    for c in status.conditions:
        colour = {"True": "green", "False": "red"}.get(c.status, "yellow")
        grid.add_row("condition", f"{esc(c.type)}=[{colour}]{c.status}[/] {esc(c.reason)}")
    for key, value in sorted((status.metrics or {}).items()):
        grid.add_row("metric", f"{esc(key)} = {value:.4g}")
    if status.gate is not None:
        verdict = "[green]passed[/]" if status.gate.passed else "[red]failed[/]"
        grid.add_row("gate", verdict)
        for r in status.gate.results:
            mark = "[green]✓[/]" if r.passed else "[red]✗[/]"
            grid.add_row("", f"{mark} {esc(r.rule)} {esc(r.message)}")
    if status.model_version:
        grid.add_row("model version", esc(status.model_version))
    meta = (body or {}).get("metadata") or {}
    title = f"trainingjob {meta.get('namespace', '')}/{meta.get('name', '')}"
    return rich.panel.Panel(grid, title=esc(title), subtitle=f"{elapsed:.0f}s")


def display() -> Display:
    """A live panel when stderr is a terminal, plain lines otherwise."""
    import rich.console

    console = rich.console.Console(stderr=True, force_terminal=None)
    return LiveDisplay(console) if console.is_terminal else Display()


def observe(
    client: kube_client.Kube, namespace: str, name: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The TrainingJob (None: gone) and its training pods, oldest first."""
    body = client.get(constants.API_VERSION, "TrainingJob", namespace, name)
    if body is None:
        return None, []
    uid = (body.get("metadata") or {}).get("uid")
    pods = (
        client.list_objects("v1", "Pod", namespace, f"{constants.LABEL_TRAININGJOB_UID}={uid}")
        if uid
        else []
    )
    pods.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return body, pods


def events(
    client: kube_client.Kube, namespace: str, body: dict[str, Any], pods: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Events about the run, its Job and its pods (best effort: none when unreadable)."""
    import urllib3

    from toque.clients import kube

    uids = [(body.get("metadata") or {}).get("uid")]
    uids += [(p.get("metadata") or {}).get("uid") for p in pods]
    job_name = (body.get("status") or {}).get("jobName")
    found: list[dict[str, Any]] = []
    # Events only explain a failure already reported: no error of theirs changes the verdict.
    with contextlib.suppress(kube.ApiException, OSError, urllib3.exceptions.HTTPError):
        if job_name:
            job = client.get("batch/v1", "Job", namespace, job_name)
            uids.append(((job or {}).get("metadata") or {}).get("uid"))
        for uid in filter(None, uids):
            result = client.request(
                "GET",
                kube.resource_path("v1", "Event", namespace),
                query=[("fieldSelector", f"involvedObject.uid={uid}")],
            )
            found += result.get("items") or []
    return found


def follow(
    client: kube_client.Kube,
    namespace: str,
    name: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = POLL_INTERVAL,
    show: Display | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the run's progress until it ends; its exit code (``submit.outcome``), or
    ``TIMED_OUT`` after ``timeout`` seconds, or ``TRANSIENT`` when the API server stays
    unreachable for ``UNREACHABLE_GRACE`` seconds."""
    import urllib3

    from toque.clients import kube
    from toque.workflow import submit

    deadline = clock() + timeout
    old: dict[str, Any] | None = None
    old_pods: list[dict[str, Any]] = []
    first = True
    unreachable_since: float | None = None
    with show or display() as out:
        while True:
            try:
                body, pods = observe(client, namespace, name)
                unreachable_since = None
            except (kube.ApiException, OSError, urllib3.exceptions.HTTPError) as error:
                if not kube.is_transient(error):
                    raise
                unreachable_since = unreachable_since or clock()
                if clock() - unreachable_since >= UNREACHABLE_GRACE:
                    raise
                sleep(min(interval, max(deadline - clock(), 0.0)) or interval)
                continue
            lines = [] if first and body is None else submit.changes(old, body)
            out.update(body, pods, lines + submit.pod_changes(old_pods, pods))
            first = False
            verdict = submit.outcome(body)
            if verdict.done:
                break
            old, old_pods = body, pods
            left = deadline - clock()
            if left <= 0:
                out.note(
                    f"{PROG}: stopped following after {timeout:g}s; trainingjob "
                    f"{namespace}/{name} goes on ({verdict.message})"
                )
                return exitcodes.TIMED_OUT
            sleep(min(interval, left))
        if verdict.code == exitcodes.FAILED and body is not None:
            recent = submit.event_lines(events(client, namespace, body, pods))
            if recent:
                out.note("last events:")
                for line in recent:
                    out.note(f"  {line}")
        out.note(f"{PROG}: trainingjob {namespace}/{name} {verdict.message}")
    return exitcodes.FAILED if verdict.code is None else verdict.code
