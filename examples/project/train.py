"""Training function of the example TrainingJob (``entrypoint: examples.project.train:train``).

Logs train and validation accuracy/F1 (the gate's overfitting rule compares ``train_*`` with
``val_*``) and returns the validation rows with the ``size_group`` column so the runtime can
compute per-group recall for the fairness rule.
"""

from __future__ import annotations

from typing import Any

from sklearn import ensemble, metrics, model_selection

from toque.trainer import context

LABEL = "target"
GROUP = "size_group"


def train(ctx: context.TrainContext) -> context.Result:
    frame = ctx.datasets["train"].frame()
    features = [c for c in frame.columns if c not in (LABEL, GROUP)]
    params: dict[str, Any] = {
        "n_estimators": int(ctx.params.get("n_estimators", 100)),
        "max_depth": ctx.params.get("max_depth"),
        "random_state": int(ctx.params.get("random_state", 0)),
    }
    train_rows, val_rows = model_selection.train_test_split(
        frame, test_size=0.25, random_state=params["random_state"], stratify=frame[LABEL]
    )
    model = ensemble.RandomForestClassifier(**params)
    model.fit(train_rows[features], train_rows[LABEL])
    for split, rows in (("train", train_rows), ("val", val_rows)):
        predicted = model.predict(rows[features])
        ctx.log_metric(f"{split}_accuracy", metrics.accuracy_score(rows[LABEL], predicted))
        ctx.log_metric(f"{split}_f1", metrics.f1_score(rows[LABEL], predicted))
    probabilities = model.predict_proba(val_rows[features])[:, 1]
    ctx.log_metric("val_roc_auc", metrics.roc_auc_score(val_rows[LABEL], probabilities))
    ctx.logger.info("trained on %d rows, validated on %d", len(train_rows), len(val_rows))
    return context.Result(
        model=model,
        validation=val_rows[[*features, LABEL, GROUP]],
        label_column=LABEL,
        feature_columns=features,
    )
