"""Training functions the end-to-end tests run in real pods (shipped in the code snapshot)."""

from __future__ import annotations

from toque.trainer import context


def explode(ctx: context.TrainContext) -> context.Result:
    frame = ctx.datasets["train"].frame()
    raise ValueError(f"column 'age' missing from {len(frame.columns)} columns")


def churn_classifier(ctx: context.TrainContext) -> context.Result:
    """A one-hot + logistic-regression pipeline on ``tests.e2e.drift_data``'s table: a model
    with a string input column, served through MLflow's pyfunc, watched by a DriftMonitor."""
    from sklearn import compose, linear_model, metrics, model_selection, pipeline, preprocessing

    from tests.e2e import drift_data

    frame = ctx.datasets["train"].frame()
    train_rows, val_rows = model_selection.train_test_split(
        frame, test_size=0.25, random_state=0, stratify=frame[drift_data.LABEL]
    )
    model = pipeline.Pipeline(
        [
            (
                "encode",
                compose.ColumnTransformer(
                    [
                        (
                            "channel",
                            preprocessing.OneHotEncoder(handle_unknown="ignore"),
                            [drift_data.CATEGORICAL],
                        )
                    ],
                    remainder="passthrough",
                ),
            ),
            ("classify", linear_model.LogisticRegression(max_iter=500)),
        ]
    )
    features = drift_data.FEATURES
    model.fit(train_rows[features], train_rows[drift_data.LABEL])
    for split, rows in (("train", train_rows), ("val", val_rows)):
        predicted = model.predict(rows[features])
        ctx.log_metric(
            f"{split}_accuracy", metrics.accuracy_score(rows[drift_data.LABEL], predicted)
        )
    return context.Result(
        model=model,
        validation=val_rows[[*features, drift_data.LABEL]],
        label_column=drift_data.LABEL,
        feature_columns=features,
    )
