"""``toque.serving.linear`` answers what scikit-learn answers, bit for bit, or is not built.

Models fitted on scikit-learn's breast-cancer and iris data; each request is parsed by
``toque.serving.payload`` as the server parses it, and the reference is the estimator's own
``predict``/``predict_proba`` on the DataFrame the same body makes for pyfunc.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from toque.serving import exact, linear, metrics, payload, signature

# scikit-learn's warnings: a matrix without column names; a small model not converging.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]
NAMES = ["standard+logistic", "minmax-clip+multinomial", "maxabs+ridge", "columns+scaler+logistic"]
NOT_LINEAR = [
    "forest",
    "polynomial features",
    "dropped first category",
    "sparse ColumnTransformer output",
    "bare logistic regression",
    "pandas output",
]


def _schema(frame: pd.DataFrame) -> signature.Schema:
    import mlflow.models

    inputs = mlflow.models.infer_signature(frame).inputs.to_json()
    return signature.from_mlmodel({"signature": {"inputs": inputs}})


def _cancer() -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    mixed = x.copy()
    rng = np.random.default_rng(0)
    mixed["region"] = pd.Series(rng.choice(["north", "south", "east"], len(x)), dtype=object)
    mixed["plan"] = pd.Series(rng.choice(["free", "pro"], len(x)), dtype=object)
    return x, mixed, y


@functools.cache
def _models() -> dict[str, tuple[Any, pd.DataFrame]]:
    from sklearn import compose, linear_model, pipeline, preprocessing
    from sklearn.datasets import load_iris

    x, mixed, y = _cancer()
    iris, iris_y = load_iris(return_X_y=True, as_frame=True)
    numeric = list(x.columns)
    encode = compose.ColumnTransformer(
        [
            ("num", preprocessing.StandardScaler(), numeric[:20]),
            ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["region", "plan"]),
            ("raw", "passthrough", numeric[20:]),
        ]
    )
    return {
        "standard+logistic": (
            pipeline.make_pipeline(
                preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=5000)
            ).fit(x, y),
            x,
        ),
        "minmax-clip+multinomial": (
            pipeline.make_pipeline(
                preprocessing.MinMaxScaler(clip=True),
                linear_model.LogisticRegression(max_iter=5000),
            ).fit(iris, iris_y),
            iris,
        ),
        "maxabs+ridge": (
            pipeline.make_pipeline(preprocessing.MaxAbsScaler(), linear_model.Ridge()).fit(
                x, x["mean area"] * 0.1 + y
            ),
            x,
        ),
        "columns+scaler+logistic": (
            pipeline.make_pipeline(
                encode,
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(max_iter=5000),
            ).fit(mixed, y),
            mixed,
        ),
    }


def _request(frame: pd.DataFrame, schema: signature.Schema, fast: linear.Linear) -> Any:
    body = orjson.dumps(
        {
            "dataframe_split": {
                "columns": list(frame.columns),
                "data": frame.astype(object).to_numpy().tolist(),
            }
        }
    )
    batch = payload.parse_invocations(body, schema, fast.input == "matrix", fast.input == "columns")
    reference = payload.parse_invocations(body, schema, False).frame
    return (batch.matrix if fast.input == "matrix" else batch.columns), reference


def _compiled(name: str) -> tuple[linear.Linear, Any, pd.DataFrame, signature.Schema]:
    estimator, frame = _models()[name]
    schema = _schema(frame)
    fast = linear.compile_model(estimator, schema)
    assert fast is not None
    return fast, estimator, frame, schema


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows", [1, 2, 7, 100, 150])
def test_predictions_and_probabilities_equal_sklearns_bit_for_bit(name: str, rows: int) -> None:
    fast, estimator, frame, schema = _compiled(name)
    for start in range(0, len(frame) - rows + 1, max(rows, 53)):
        inputs, reference = _request(frame.iloc[start : start + rows], schema, fast)
        out = fast.run(inputs, True)
        expected = np.asarray(estimator.predict(reference))
        assert out.values.dtype == expected.dtype
        assert np.array_equal(out.values, expected)
        if fast.classes is not None:
            assert out.proba is not None
            assert np.array_equal(out.proba, estimator.predict_proba(reference))
            assert out.class_index is not None
            assert np.array_equal(fast.classes[out.class_index], expected)
        else:
            assert out.proba is None and out.class_index is None


@pytest.mark.parametrize("name", NAMES)
def test_run_parts_answers_each_request_as_a_call_of_its_own(name: str) -> None:
    fast, estimator, frame, schema = _compiled(name)
    inputs, reference = _request(frame.iloc[:20], schema, fast)
    bounds = [(0, 1), (1, 8), (8, 20)]
    out = fast.run_parts(inputs, True, bounds)
    for start, stop in bounds:
        part = reference.iloc[start:stop].reset_index(drop=True)
        assert np.array_equal(out.values[start:stop], estimator.predict(part))
        if fast.classes is not None:
            assert out.proba is not None
            assert np.array_equal(out.proba[start:stop], estimator.predict_proba(part))


def test_the_load_check_accepts_it_and_batches_only_the_transforms() -> None:
    fast, estimator, frame, schema = _compiled("columns+scaler+logistic")

    class Pyfunc:
        def predict(self, data: pd.DataFrame) -> Any:
            return estimator.predict(data)

    verdict = exact.check(fast, Pyfunc(), estimator, schema, frame.head(64), {})
    assert (verdict.ok, verdict.rows, verdict.batching) == (True, 64, exact.TRANSFORMS)


def test_unknown_categories_are_ignored_as_the_encoder_ignores_them() -> None:
    fast, estimator, frame, schema = _compiled("columns+scaler+logistic")
    part = frame.iloc[:5].copy()
    part["region"] = ["nowhere", "north", "", "south", "Nowhere"]
    inputs, reference = _request(part, schema, fast)
    out = fast.run(inputs, True)
    assert np.array_equal(out.values, estimator.predict(reference))
    assert np.array_equal(out.proba, estimator.predict_proba(reference))


def test_a_missing_category_is_answered_by_sklearn_itself() -> None:
    fast, _, frame, schema = _compiled("columns+scaler+logistic")
    inputs, _ = _request(frame.iloc[:3], schema, fast)
    # An optional column's null (the bench's signature makes every column required).
    inputs["plan"] = np.asarray(["free", None, "pro"], dtype=object)
    assert not fast._plain(inputs)
    out = fast.run(inputs, True)
    native = fast.fallback.run(inputs, True)
    assert np.array_equal(out.values, native.values)
    assert np.array_equal(out.proba, native.proba)


def test_an_encoder_that_errors_on_unknown_categories_still_errors() -> None:
    from sklearn import compose, linear_model, pipeline, preprocessing

    _, mixed, y = _cancer()
    encode = compose.ColumnTransformer(
        [("cat", preprocessing.OneHotEncoder(handle_unknown="error"), ["region", "plan"])],
        remainder=preprocessing.StandardScaler(),
    )
    estimator = pipeline.make_pipeline(encode, linear_model.LogisticRegression()).fit(mixed, y)
    schema = _schema(mixed)
    fast = linear.compile_model(estimator, schema)
    assert fast is not None
    part = mixed.iloc[:2].copy()
    part["region"] = ["north", "atlantis"]
    inputs, reference = _request(part, schema, fast)
    with pytest.raises(ValueError, match="unknown categories"):
        estimator.predict(reference)
    with pytest.raises(ValueError, match="unknown categories"):
        fast.run(inputs, False)


def _not_linear() -> dict[str, tuple[Any, pd.DataFrame]]:
    from sklearn import compose, ensemble, linear_model, pipeline, preprocessing

    x, mixed, y = _cancer()
    return {
        "forest": (ensemble.RandomForestClassifier(n_estimators=3).fit(x, y), x),
        "polynomial features": (
            pipeline.make_pipeline(
                preprocessing.PolynomialFeatures(2), linear_model.LogisticRegression()
            ).fit(x.iloc[:, :4], y),
            x.iloc[:, :4],
        ),
        "dropped first category": (
            pipeline.make_pipeline(
                compose.ColumnTransformer(
                    [("cat", preprocessing.OneHotEncoder(drop="first"), ["region", "plan"])]
                ),
                linear_model.LogisticRegression(),
            ).fit(mixed, y),
            mixed,
        ),
        "sparse ColumnTransformer output": (
            pipeline.make_pipeline(
                compose.ColumnTransformer(
                    [("cat", preprocessing.OneHotEncoder(), ["region", "plan"])],
                    sparse_threshold=1.0,
                ),
                linear_model.LogisticRegression(),
            ).fit(mixed, y),
            mixed,
        ),
        "bare logistic regression": (linear_model.LogisticRegression().fit(x, y), x),
        "pandas output": (
            pipeline.make_pipeline(
                preprocessing.StandardScaler().set_output(transform="pandas"),
                linear_model.LogisticRegression(),
            ).fit(x, y),
            x,
        ),
    }


@pytest.mark.parametrize("name", NOT_LINEAR)
def test_models_it_cannot_answer_exactly_are_not_compiled(name: str) -> None:
    estimator, frame = _not_linear()[name]
    assert linear.compile_model(estimator, _schema(frame)) is None


def test_metrics_count_column_vectors_as_they_count_the_same_rows_as_a_dataframe() -> None:
    layout = metrics.Layout(
        "m",
        "3",
        "sha256:x",
        [("a", 0, [1.0, 2.0])],
        [("colour", 1, ["red", "blue"])],
        None,
        ["no", "yes"],
    )
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5, np.nan], "colour": ["red", "blue", "x", "red"]})
    labels = np.asarray(["yes", "no", "yes", "no"])
    as_frames, as_vectors = metrics.Metrics(layout), metrics.Metrics(layout)
    for start, stop in ((0, 1), (1, 4)):
        as_frames.batch(frame.iloc[start:stop], stop - start, None, labels[start:stop])
        vectors = {name: frame[name].to_numpy()[start:stop] for name in frame}
        as_vectors.batch(vectors, stop - start, None, labels[start:stop])
    as_frames.flush()
    as_vectors.flush()
    assert as_vectors.counts.features == as_frames.counts.features == [[1, 1, 1]]
    assert as_vectors.counts.categories == as_frames.counts.categories == [[2, 1, 1]]
    assert as_vectors.counts.feature_sums == as_frames.counts.feature_sums == [4.5]
