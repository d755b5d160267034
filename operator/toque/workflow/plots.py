"""The PNG plots of ``toque report``: ROC and precision-recall curves (binary classifiers),
residuals (regressors), the confusion matrix (classifiers), feature importance, and the
primary metric across the model's registry versions.

Called by ``toque.cli.report_cmd`` with ``report.Facts`` (``render``). Figures are drawn on
matplotlib's ``Figure`` with the Agg canvas, never through pyplot: no display, no global
state, nothing left open. Every PNG is ``WIDTH`` by ``HEIGHT`` inches at ``DPI`` (640 by 480
pixels). The curves are computed here with numpy, as scikit-learn computes them, so the CLI
needs no scikit-learn.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from toque.trainer import report_artifacts as artifacts
from toque.workflow import report

WIDTH, HEIGHT, DPI = 6.4, 4.8, 100
PIXELS = (int(WIDTH * DPI), int(HEIGHT * DPI))
MAX_FEATURES = 15  # bars in the importance plot
MAX_CLASSES = 20  # a confusion matrix wider than this is unreadable
MAX_POINTS = 5000  # residual scatter points


@dataclasses.dataclass(frozen=True)
class Plotted:
    name: str  # file stem, e.g. "roc"
    title: str
    path: pathlib.Path


def _figure() -> Any:
    from matplotlib.backends import backend_agg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    backend_agg.FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": it would change the size the report's readers expect.
    figure.savefig(path, format="png", dpi=DPI)
    return path


# -- the curves ----------------------------------------------------------------------------


def _cumulative(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], positive[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits)[last]
    fps = (last + 1) - tps
    return tps, fps


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False and true positive rates, and the area under the curve."""
    tps, fps = _cumulative(positive, scores)
    tpr = np.r_[0.0, tps] / max(tps[-1], 1.0)
    fpr = np.r_[0.0, fps] / max(fps[-1], 1.0)
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def pr_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Recall, precision, and the average precision (scikit-learn's step-wise sum)."""
    tps, fps = _cumulative(positive, scores)
    precision = tps / (tps + fps)
    recall = tps / max(tps[-1], 1.0)
    recall, precision = np.r_[0.0, recall], np.r_[1.0, precision]
    average = float(np.sum(np.diff(recall) * precision[1:]))
    return recall, precision, average


def binary_scores(frame: pd.DataFrame) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(positive class, is-positive per row, its score) when the classifier is binary."""
    columns = [c for c in frame.columns if str(c).startswith(artifacts.PROBA_PREFIX)]
    if len(columns) != 2:
        return None
    positive_class = str(columns[1])[len(artifacts.PROBA_PREFIX) :]  # classes_[1], as sklearn
    positive = (frame[artifacts.LABEL].astype(str) == positive_class).to_numpy()
    if positive.all() or not positive.any():
        return None  # one class only: no curve to draw
    return positive_class, positive, frame[columns[1]].to_numpy(dtype=float)


def plot_roc(frame: pd.DataFrame, path: pathlib.Path) -> pathlib.Path | None:
    found = binary_scores(frame)
    if found is None:
        return None
    name, positive, scores = found
    fpr, tpr, area = roc_curve(positive, scores)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, lw=2, label=f"AUC = {area:.4f}")
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    axes.set(
        xlabel="False positive rate",
        ylabel="True positive rate",
        title=f"ROC curve (positive class {name})",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_pr(frame: pd.DataFrame, path: pathlib.Path) -> pathlib.Path | None:
    found = binary_scores(frame)
    if found is None:
        return None
    name, positive, scores = found
    recall, precision, average = pr_curve(positive, scores)
    figure = _figure()
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", lw=2, label=f"AP = {average:.4f}")
    axes.axhline(positive.mean(), ls="--", color="grey", lw=1, label="chance")
    axes.set(
        xlabel="Recall",
        ylabel="Precision",
        title=f"Precision-recall curve (positive class {name})",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def confusion(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts of (true label, predicted label) over every class either side holds."""
    labels = frame[artifacts.LABEL].astype(str)
    predicted = frame[artifacts.PREDICTION].astype(str)
    classes = sorted(set(labels) | set(predicted))
    table = pd.crosstab(labels, predicted)
    return table.reindex(index=classes, columns=classes, fill_value=0)


def plot_confusion(frame: pd.DataFrame, path: pathlib.Path) -> pathlib.Path | None:
    table = confusion(frame)
    if len(table) > MAX_CLASSES or table.empty:
        return None
    counts = table.to_numpy()
    figure = _figure()
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(table))
    crowded = len(table) > 4
    axes.set_xticks(
        ticks,
        [str(c) for c in table.columns],
        rotation=45 if crowded else 0,
        ha="right" if crowded else "center",
    )
    axes.set_yticks(ticks, [str(c) for c in table.index])
    axes.set(xlabel="Predicted", ylabel="True", title=f"Confusion matrix ({len(frame)} rows)")
    if len(table) <= 12:
        threshold = counts.max() / 2
        for i in ticks:
            for j in ticks:
                colour = "white" if counts[i, j] > threshold else "black"
                axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour)
    return _save(figure, path)


def plot_residuals(frame: pd.DataFrame, path: pathlib.Path) -> pathlib.Path | None:
    predicted = pd.to_numeric(frame[artifacts.PREDICTION], errors="coerce").to_numpy(float)
    truth = pd.to_numeric(frame[artifacts.LABEL], errors="coerce").to_numpy(float)
    keep = np.isfinite(predicted) & np.isfinite(truth)
    if not keep.any():
        return None
    predicted, residual = predicted[keep], truth[keep] - predicted[keep]
    figure = _figure()
    scatter, histogram = figure.subplots(1, 2, width_ratios=(2, 1), sharey=True)
    shown = np.random.default_rng(0).permutation(len(residual))[:MAX_POINTS]
    scatter.scatter(predicted[shown], residual[shown], s=6, alpha=0.5)
    scatter.axhline(0, color="grey", lw=1)
    scatter.set(xlabel="Predicted", ylabel="True - predicted", title="Residuals")
    scatter.grid(alpha=0.3)
    histogram.hist(residual, bins=40, orientation="horizontal")
    histogram.set(xlabel="Rows", title=f"RMSE {float(np.sqrt(np.mean(residual**2))):.4g}")
    return _save(figure, path)


def plot_importance(
    importance: Sequence[tuple[str, float]], path: pathlib.Path
) -> pathlib.Path | None:
    top = sorted(importance, key=lambda p: -abs(p[1]))[:MAX_FEATURES]
    if not top:
        return None
    names = [n if len(n) <= 30 else n[:29] + "…" for n, _ in reversed(top)]
    values = [v for _, v in reversed(top)]
    figure = _figure()
    axes = figure.add_subplot()
    axes.barh(range(len(values)), values)
    axes.set_yticks(range(len(values)), names, fontsize=8)
    more = f" (top {len(top)} of {len(importance)})" if len(importance) > len(top) else ""
    axes.set(xlabel="Importance", title=f"Feature importance{more}")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def plot_history(
    metric: str, points: Sequence[report.HistoryPoint], path: pathlib.Path
) -> pathlib.Path | None:
    shown = [p for p in points if p.value is not None]
    if len(shown) < 2:
        return None
    x = np.arange(len(shown))
    values = [float(p.value) for p in shown if p.value is not None]
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(x, values, marker="o", color="tab:blue", label="registry versions")
    for i, p in enumerate(shown):
        if p.champion:
            axes.plot(i, values[i], marker="*", ms=16, color="tab:orange", ls="", label="champion")
        if p.this_run:
            axes.plot(i, values[i], marker="D", ms=9, color="tab:green", ls="", label="this run")
    axes.set_xticks(x, [p.label for p in shown], rotation=45 if len(shown) > 8 else 0)
    axes.set(xlabel="Model version", ylabel=metric, title=f"{metric} across versions")
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return _save(figure, path)


# -- all of them ---------------------------------------------------------------------------


def render(
    facts: report.Facts, history: Sequence[report.HistoryPoint], directory: pathlib.Path
) -> tuple[list[Plotted], list[str]]:
    """Every plot the facts allow, written under ``directory``; and a note per plot that
    failed (a broken artifact should cost its plot, not the report)."""
    jobs: list[tuple[str, str, Any]] = []
    frame = facts.predictions
    if frame is not None and {artifacts.LABEL, artifacts.PREDICTION} <= set(frame.columns):
        if facts.task == artifacts.CLASSIFICATION:
            jobs += [
                ("roc", "ROC curve", functools.partial(plot_roc, frame)),
                ("pr", "Precision-recall curve", functools.partial(plot_pr, frame)),
                ("confusion", "Confusion matrix", functools.partial(plot_confusion, frame)),
            ]
        else:
            jobs.append(("residuals", "Residuals", functools.partial(plot_residuals, frame)))
    if facts.importance:
        draw = functools.partial(plot_importance, facts.importance)
        jobs.append(("importance", "Feature importance", draw))
    metric = facts.primary_metric
    if metric and history:
        draw = functools.partial(plot_history, metric, history)
        jobs.append(("history", f"{metric} across versions", draw))
    done: list[Plotted] = []
    notes: list[str] = []
    for name, title, draw in jobs:
        try:
            path = draw(directory / f"{name}.png")
        except Exception as error:
            notes.append(f"no {title.lower()} plot: {type(error).__name__}: {error}")
            continue
        if path is not None:
            done.append(Plotted(name, title, path))
    return done, notes
