"""Draws a dashboard's panels to one PNG with matplotlib, from its own queries.

    python dashboards/render.py --prometheus http://127.0.0.1:9090 --out docs/dashboards/ops.png

Reads the generated JSON (default: the ops dashboard), runs every target through
``dashboards.queries`` as Grafana would over the time range (default: since Prometheus
started, at most the last six hours), and draws each panel in a grid: time series as lines,
stats as horizontal bars, tables as text. Run by hand for docs/dashboards/ops.png and by
tests/e2e/test_zz_dashboards.py after the end-to-end scenario.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

if __package__ in (None, ""):
    # Run as a script: the repository, not this folder, is where imports start.
    sys.path[0] = str(pathlib.Path(__file__).resolve().parents[1])

from matplotlib import dates, figure, ticker

from dashboards import queries

COLUMNS = 4
MAX_SERIES = 10
MAX_ROWS = 12
DEFAULT_SINCE = 6 * 3600


def _formatter(unit: str) -> ticker.Formatter:
    if unit == "percentunit":
        return ticker.PercentFormatter(1.0)
    suffix = {"s": " s", "h": " h", "bytes": " B", "reqps": "/s", "ops": "/s"}.get(unit, "")
    return ticker.FuncFormatter(lambda v, _: f"{v:.3g}{suffix}")


def _value(value: float, unit: str, decimals: int | None = None) -> str:
    if math.isnan(value):
        return "-"
    if unit == "percentunit":
        return f"{100 * value:.1f} %"
    text = f"{value:.{decimals}f}" if decimals is not None else f"{value:.4g}"
    return text + {"s": " s", "h": " h", "bytes": " B"}.get(unit, "")


def _timeseries(ax: Any, results: list[tuple[queries.Target, list[queries.Series]]]) -> None:
    drawn = 0
    for target, series in results:
        for s in series:
            points = [(t, v) for t, v in s.points if not math.isnan(v)]
            if not points or drawn >= MAX_SERIES:
                continue
            x = [dt.datetime.fromtimestamp(t, dt.UTC) for t, _ in points]
            ax.plot(x, [v for _, v in points], linewidth=1, label=queries.legend(target, s.labels))
            drawn += 1
        ax.yaxis.set_major_formatter(_formatter(target.unit))
    ax.xaxis.set_major_formatter(dates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=6, loc="upper left", framealpha=0.6)


def _stat(ax: Any, results: list[tuple[queries.Target, list[queries.Series]]]) -> None:
    names, values, unit, decimals = [], [], "", None
    for target, series in results:
        unit, decimals = target.unit, target.decimals
        for s in series:
            names.append(queries.legend(target, s.labels))
            values.append(s.points[-1][1])
    shown = [0.0 if math.isnan(v) else v for v in values]
    bars = ax.barh(range(len(names)), shown, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(
            _value(value, unit, decimals),
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.xaxis.set_major_formatter(_formatter(unit))
    ax.margins(x=0.25)


def _table(ax: Any, results: list[tuple[queries.Target, list[queries.Series]]]) -> None:
    rows = [(s.labels, s.points[-1][1], target.unit) for target, series in results for s in series]
    columns = sorted({k for labels, _, _ in rows for k in labels if k != "__name__"})
    cells = [[labels.get(c, "") for c in columns] + [_value(v, u)] for labels, v, u in rows]
    ax.axis("off")
    if not cells:
        return
    shown = cells[:MAX_ROWS]
    if len(cells) > MAX_ROWS:
        shown.append(["…"] * (len(columns) + 1))
    height = min(1.0, 0.08 * (len(shown) + 1))
    table = ax.table(
        cellText=shown, colLabels=[*columns, "value"], bbox=(0.0, 1.0 - height, 1.0, height)
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)


def render(
    dashboard: dict[str, Any], server: queries.Prometheus, window: queries.Window
) -> figure.Figure:
    """A figure with one axis per panel, in the dashboard's order."""
    variables = queries.variables(dashboard, server, window)
    by_panel: dict[str, list[queries.Target]] = {}
    for target in queries.targets(dashboard):
        by_panel.setdefault(target.panel, []).append(target)
    lines = math.ceil(len(by_panel) / COLUMNS)
    fig = figure.Figure(figsize=(6 * COLUMNS, 4 * lines), layout="constrained")
    start = dt.datetime.fromtimestamp(window.start, dt.UTC).strftime("%Y-%m-%d %H:%M")
    end = dt.datetime.fromtimestamp(window.end, dt.UTC).strftime("%H:%M UTC")
    fig.suptitle(f"{dashboard.get('title')}  ({start} to {end})", fontsize=14)
    for i, (title, targets) in enumerate(by_panel.items()):
        ax = fig.add_subplot(lines, COLUMNS, i + 1)
        ax.set_title(title, fontsize=10)
        results = [(t, queries.run(server, t, variables, window)) for t in targets]
        if not any(queries.has_data(series) for _, series in results):
            ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        elif targets[0].kind == "timeseries":
            _timeseries(ax, results)
        elif targets[0].kind == "table":
            _table(ax, results)
        else:
            _stat(ax, results)
        ax.tick_params(labelsize=7)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="the PNG to write")
    parser.add_argument(
        "--dashboard", type=pathlib.Path, default=queries.GENERATED / "toque-ops.json"
    )
    parser.add_argument("--since", type=float, help="start of the range, unix seconds")
    parser.add_argument("--until", type=float, help="end of the range, unix seconds (now)")
    args = parser.parse_args(argv)
    server = queries.Prometheus(args.prometheus)
    end = args.until or time.time()
    start = args.since or max(server.start_time(), end - DEFAULT_SINCE)
    window = queries.Window(start, end, server.scrape_interval())
    fig = render(queries.load(args.dashboard), server, window)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
