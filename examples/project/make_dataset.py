"""Writes the breast-cancer dataset (bundled with scikit-learn, no download) as a CSV.

``size_group`` (small / large tumours by mean radius) is a categorical column the fairness
rule of the example's evaluation gate groups by; it is not a model feature.

    python -m examples.project.make_dataset data/breast-cancer
    toque data push data/breast-cancer --name breast-cancer
"""

from __future__ import annotations

import pathlib
import sys

from sklearn import datasets


def write(directory: pathlib.Path, shift: float = 0.0) -> pathlib.Path:
    """The CSV at ``directory/breast_cancer.csv``; ``shift`` scales features (drift demos)."""
    frame = datasets.load_breast_cancer(as_frame=True).frame
    if shift:
        features = [c for c in frame.columns if c != "target"]
        frame[features] = frame[features] * (1.0 + shift)
    median = frame["mean radius"].median()
    frame["size_group"] = ["large" if r > median else "small" for r in frame["mean radius"]]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "breast_cancer.csv"
    frame.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    print(write(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "data/breast-cancer")))
