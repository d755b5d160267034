"""The multivariate drift signal: PCA reconstruction error of the numeric features.

A change in how features move together (a correlation that flips) leaves every marginal
distribution, and so every per-feature test, unchanged. ``fit`` (called by
``profile.build_profile``) standardises the reference's numeric features, keeps the
principal components that explain ``VARIANCE`` (65 %) of their variance, and records the
mean reconstruction error (Euclidean distance of a row to its projection back from those
components) of each calibration chunk. ``score`` (called by ``check.check`` when the
current frame is passed) computes the current rows' mean error and flags drift above the
chunks' mean + 3 std; the std is widened by √(chunk rows / current rows) for a current
window smaller than a chunk, as the mean error of fewer rows varies more. Missing and
infinite values count as the reference mean (0 once standardised). Both sides use at most
about ``MAX_ROWS`` rows — the reference the profile's seeded calibration sample, the
current every k-th row —: the mean error of 100,000 rows is already precise to a fraction
of its std, and a million rows would cost seconds of memory traffic. Pure numpy: an
eigen-decomposition of the d x d correlation matrix, no row loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.drift import current, types

VARIANCE = 0.65
SIGMAS = 3.0
MAX_ROWS = 100_000


def _step(rows: int) -> int:
    return max(1, -(-rows // MAX_ROWS))


def _standardised(
    frame: Any, columns: list[str], mean: Any, scale: Any, take: slice | npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    matrix = np.column_stack([current.as_float(frame[name])[take] for name in columns])
    matrix = (matrix - np.asarray(mean)) / np.asarray(scale)
    matrix[~np.isfinite(matrix)] = 0.0
    return np.asarray(matrix, dtype=np.float64)


def _errors(matrix: npt.NDArray[np.float64], components: Any) -> npt.NDArray[np.float64]:
    basis = np.asarray(components, dtype=np.float64)
    residual = matrix - (matrix @ basis.T) @ basis
    return np.asarray(np.sqrt(np.einsum("ij,ij->i", residual, residual)), dtype=np.float64)


def fit(
    frame: Any,
    features: dict[str, types.FeatureProfile],
    rows: npt.NDArray[np.intp] | None,
    chunk_of: npt.NDArray[np.intp] | None,
    chunks: int,
) -> dict[str, Any] | None:
    """The PCA model of the reference rows at positions ``rows`` (the calibration sample;
    ``chunk_of``: each one's chunk), or None: fewer than two varying numeric features,
    features so independent that 65 % of the variance needs all of them, or a reference
    too small to cut into calibration chunks (``rows`` None)."""
    columns = [
        name for name, f in features.items() if f.kind == "numeric" and f.mean is not None and f.std
    ]
    if len(columns) < 2 or rows is None or chunk_of is None:
        return None
    mean = [features[name].mean for name in columns]
    scale = [features[name].std for name in columns]
    matrix = _standardised(frame, columns, mean, scale, rows)
    values, vectors = np.linalg.eigh(matrix.T @ matrix / len(matrix))
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    share = np.cumsum(values) / values.sum()
    keep = int(np.searchsorted(share, VARIANCE, side="left")) + 1
    if keep >= len(columns):  # no residual space: every row reconstructs exactly
        return None
    components = vectors[:, :keep].T
    errors = _errors(matrix, components)
    per_chunk = np.bincount(chunk_of, weights=errors, minlength=chunks) / np.bincount(
        chunk_of, minlength=chunks
    )
    return {
        "columns": columns,
        "mean": mean,
        "scale": scale,
        "components": components.tolist(),
        "explained": float(share[keep - 1]),
        "error_mean": float(per_chunk.mean()),
        "error_std": float(per_chunk.std(ddof=1)),
        "chunk_rows": len(matrix) // chunks,
    }


def score(model: dict[str, Any], frame: Any) -> types.MultivariateResult | None:
    """The current rows' mean reconstruction error against the reference bound; None when
    the frame has no rows or lacks one of the model's columns."""
    columns = [str(c) for c in model["columns"]]
    if not len(frame) or any(name not in frame.columns for name in columns):
        return None
    take = slice(None, None, _step(len(frame)))
    matrix = _standardised(frame, columns, model["mean"], model["scale"], take)
    error = float(_errors(matrix, model["components"]).mean())
    widen = math.sqrt(max(1.0, model["chunk_rows"] / len(matrix)))
    threshold = model["error_mean"] + SIGMAS * model["error_std"] * widen
    return types.MultivariateResult(error=error, threshold=threshold, drifted=error > threshold)
