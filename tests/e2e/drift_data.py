"""Rows of a churn-like table for the drift tests: eight numeric features, one categorical.

The label follows one fixed rule of the inputs (``logit``), so a shift of the inputs is a
covariate shift: the model stays right about the rows it sees, and what drifts is what it
is asked. ``draw(shifted=True)`` moves ``SHIFTED_NUMERIC`` by one standard deviation and
turns ``channel`` from mostly web to mostly phone; every other column keeps its law.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NUMERIC = [f"f{i}" for i in range(8)]
CATEGORICAL = "channel"
FEATURES = [*NUMERIC, CATEGORICAL]
LABEL = "churned"
CHANNELS = ["web", "app", "store", "phone"]
REFERENCE_MIX = [0.5, 0.3, 0.15, 0.05]
SHIFTED_MIX = [0.1, 0.2, 0.1, 0.6]
SHIFTED_NUMERIC = ["f0", "f1", "f2"]
_EFFECT = {"web": 0.4, "app": -0.4, "store": 0.0, "phone": 0.8}


def draw(rows: int, seed: int, shifted: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in NUMERIC})
    if shifted:
        for name in SHIFTED_NUMERIC:
            frame[name] += 1.0
    frame[CATEGORICAL] = rng.choice(
        CHANNELS, size=rows, p=SHIFTED_MIX if shifted else REFERENCE_MIX
    )
    logit = (
        1.5 * frame["f0"]
        - 1.0 * frame["f1"]
        + 0.8 * frame["f3"]
        - 0.5 * frame["f5"]
        + frame[CATEGORICAL].map(_EFFECT).to_numpy()
    )
    frame[LABEL] = (logit + rng.logistic(0.0, 0.5, rows) > 0).astype(int)
    return frame
