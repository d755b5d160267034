"""A model that fails on a share of its inputs: the broken version a canary must catch.

Pickled by value into the MLflow model (cloudpickle), so serving pods need no test code.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    # mlflow.pyfunc warns about its own type hints at import, and about ours (none: MLflow
    # would read them as an input schema) when the class is defined.
    warnings.simplefilter("ignore", UserWarning)
    import mlflow.pyfunc

    class FailsAboveThreshold(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        """Delegates to a real classifier, but raises for rows whose first feature is large."""

        def __init__(self, model: Any, column: str, threshold: float) -> None:
            self.model = model
            self.column = column
            self.threshold = threshold

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            if (model_input[self.column] > self.threshold).any():
                raise ValueError(f"{self.column} above {self.threshold}: this version is broken")
            return self.model.predict(model_input)
