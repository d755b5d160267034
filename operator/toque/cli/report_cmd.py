"""``toque report TARGET``: a pull-request comment about a TrainingJob or an MLflow run.

Metrics against the model's champion, params and dataset diffs, the gate's verdict per rule
and PNG plots, as Markdown (or ``--format json``): ``dvc metrics diff --md`` and ``cml
comment create`` in one, read from the cluster and the registry. Plots are written to
``--plots-dir`` and referenced by relative path (a workflow attaches them), or with
``--upload`` logged as artifacts of the run and linked by their MLflow URL.

Registered by ``toque.cli.main``; ``toque.workflow.gather`` reads, ``toque.workflow.report``
compares and renders, ``toque.workflow.plots`` draws. Exit codes: 0 written, 2 usage, 3 no
such job or run (or MLflow refused), 75 the API server or MLflow is unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from toque.core import exitcodes

if TYPE_CHECKING:
    from toque.workflow import report

EXIT_USAGE = 2
DEFAULT_PLOTS_DIR = pathlib.Path("reports/figures")


def register(subs: Any) -> None:
    parser = subs.add_parser(
        "report",
        help="Markdown report of a TrainingJob or MLflow run against the champion",
        description="Metrics against the champion, params and dataset diffs, the gate's "
        "verdict and plots, ready for a pull-request comment.",
    )
    parser.add_argument("target", help="tj/NAME, NAME (a TrainingJob) or run:RUN_ID")
    parser.add_argument(
        "--champion",
        metavar="ALIAS",
        help="registry alias to compare with (default: the gate's, else champion)",
    )
    parser.add_argument(
        "--metric", help="metric plotted across versions (default: the gate's, else val_*)"
    )
    parser.add_argument(
        "--model", help="registered model (default: the job's spec.model, the run's tags)"
    )
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--out", type=pathlib.Path, help="write here (default: stdout)")
    parser.add_argument(
        "--plots-dir",
        type=pathlib.Path,
        default=DEFAULT_PLOTS_DIR,
        help=f"where the PNGs go (default {DEFAULT_PLOTS_DIR}/)",
    )
    parser.add_argument("--no-plots", action="store_true", help="no plots")
    parser.add_argument(
        "--upload",
        action="store_true",
        help="log the PNGs as artifacts of the run (toque/report/) and link them by URL",
    )
    parser.add_argument("--tracking-uri", help="MLflow (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--mlflow-url",
        help="MLflow's address in the report's links, when readers reach it elsewhere than "
        "--tracking-uri (default: the tracking URI without credentials)",
    )
    parser.add_argument(
        "-n", "--namespace", help="default: the kubeconfig context's namespace, else default"
    )
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="default: $KUBECONFIG")
    parser.set_defaults(func=run)


def _kube(args: argparse.Namespace, required: bool) -> tuple[Any, str]:
    """A Kubernetes client and namespace; (None, namespace) when there is no configuration
    and the target does not need one."""
    import kubernetes

    from toque.cli import rollout_cmd

    try:
        namespace = args.namespace or rollout_cmd.default_namespace(args.kubeconfig)
        return rollout_cmd.connect(args.kubeconfig), namespace
    except (kubernetes.config.ConfigException, OSError):
        if required:
            raise
        return None, args.namespace or "default"


def _store() -> Any:
    from toque.data import store

    return store.DataStore.from_env()


def _store_configured() -> bool:
    return bool(os.environ.get("TOQUE_S3_ENDPOINT") or os.environ.get("AWS_ACCESS_KEY_ID"))


def _link(path: pathlib.Path, out: pathlib.Path | None) -> str:
    """The path a Markdown file at ``out`` (or the working directory) reaches ``path`` by."""
    start = out.parent if out is not None else pathlib.Path()
    return pathlib.Path(os.path.relpath(path, start)).as_posix()


def figures(
    facts: report.Facts, args: argparse.Namespace, tracking_uri: str
) -> tuple[list[report.Figure], list[str]]:
    """Draw the plots, upload them when asked, and say how the report links each."""
    from toque.workflow import gather, report

    try:
        from toque.workflow import plots
    except ImportError as error:  # matplotlib is in toque[cli]
        return [], [f"no plots: {error} (pip install 'toque[cli]')"]
    drawn, notes = plots.render(facts, report.history(facts), args.plots_dir)
    if args.upload and drawn:
        files = [p.path for p in drawn]
        links = gather.upload(tracking_uri, facts.run, files, args.mlflow_url)
        return [report.Figure(p.name, p.title, links[p.path]) for p in drawn], notes
    return [report.Figure(p.name, p.title, _link(p.path, args.out)) for p in drawn], notes


def run(args: argparse.Namespace) -> int:
    import kubernetes

    from toque.workflow import gather, report

    try:
        target = gather.parse_target(args.target)
    except ValueError as error:
        print(f"toque report: {error}", file=sys.stderr)
        return EXIT_USAGE
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        print("toque report: set MLFLOW_TRACKING_URI or pass --tracking-uri", file=sys.stderr)
        return EXIT_USAGE
    try:
        kube, namespace = _kube(args, required=target.kind == "job")
    except (kubernetes.config.ConfigException, OSError) as error:
        print(f"toque report: no Kubernetes configuration: {error}", file=sys.stderr)
        return EXIT_USAGE
    options = gather.Options(
        tracking_uri=tracking_uri,
        champion=args.champion,
        metric=args.metric,
        model=args.model,
        namespace=namespace,
        link_url=args.mlflow_url,
    )
    try:
        facts = gather.gather(
            target, options, kube=kube, store=_store if _store_configured() else None
        )
        drawn, notes = ([], []) if args.no_plots else figures(facts, args, tracking_uri)
    except gather.UnavailableError as error:
        print(f"toque report: {error}", file=sys.stderr)
        return exitcodes.TRANSIENT
    except gather.GatherError as error:
        print(f"toque report: {error}", file=sys.stderr)
        return exitcodes.PERMANENT
    facts = dataclasses.replace(facts, notes=(*facts.notes, *notes))
    built = report.collect(facts, drawn)
    text = report.to_json(built) if args.format == "json" else report.markdown(built)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return exitcodes.OK
