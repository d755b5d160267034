"""The few panel shapes Toque's dashboards use, over grafana-foundation-sdk's builders.

Every panel reads the dashboard's ``$datasource``; time series panels run range queries,
stats and tables instant ones over the whole time range (``[$__range]``), so a stat says what
happened in the range, not what a gauge reads this second. ``Numbering`` gives panels their
ids. Called by ``dashboards.ops`` and ``dashboards.platform_team``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
GRID_WIDTH = 24
ALL = model.VariableOption(selected=True, text="All", value="$__all")
# A dashboard's content, top to bottom: rows and the panels under them.
Item = dashboard.Row | builder.Builder[model.Panel]


@dataclasses.dataclass(frozen=True)
class Query:
    """One PromQL target and the legend of its series (Grafana's ``{{label}}`` format)."""

    expr: str
    legend: str = ""


class Numbering:
    """Hands out panel ids, 1, 2, 3..., in the order panels are made."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def label_variable(
    name: str, label: str, query: str, all_value: str | None
) -> dashboard.QueryVariable:
    """A multi-value variable from ``label_values(...)``, "All" selected. With ``all_value``
    "All" is that regex; without it Grafana sends every value it listed."""
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(ALL)
    )
    return variable.all_value(all_value) if all_value else variable


def _target(i: int, query: Query, instant: bool, table_format: bool) -> prometheus.Dataquery:
    target = prometheus.Dataquery().ref_id(chr(ord("A") + i)).expr(query.expr)
    if query.legend:
        target = target.legend_format(query.legend)
    target = target.instant() if instant else target.range()
    if table_format:
        target = target.format(prometheus_model.PromQueryFormat.TABLE)
    return target


def timeseries_panel(
    ids: Numbering,
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 8,
    height: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            options.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if stacked:
        panel = panel.stacking(options.StackingConfig().mode(common.StackingMode.NORMAL))
    for i, query in enumerate(queries):
        panel = panel.with_target(_target(i, query, instant=False, table_format=False))
    return panel


def stat_panel(
    ids: Numbering,
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 6,
    height: int = 6,
    decimals: int | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    for i, query in enumerate(queries):
        panel = panel.with_target(_target(i, query, instant=True, table_format=False))
    return panel


def table_panel(
    ids: Numbering,
    title: str,
    description: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
) -> table.Panel:
    panel = (
        table.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
    )
    for i, query in enumerate(queries):
        panel = panel.with_target(_target(i, query, instant=True, table_format=True))
    return panel


def row(ids: Numbering, title: str) -> dashboard.Row:
    return dashboard.Row(title).id(ids.next())


def assemble(board: dashboard.Dashboard, items: Iterable[Item]) -> dashboard.Dashboard:
    """``board`` with ``items`` laid out in order (the SDK wraps lines at 24 columns)."""
    for item in items:
        board = board.with_row(item) if isinstance(item, dashboard.Row) else board.with_panel(item)
    return board
