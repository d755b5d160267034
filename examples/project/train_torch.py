"""GPU variant of the example (``examples/trainingjob-gpu.yaml``): a small PyTorch MLP.

Uses CUDA when the pod has a GPU, else the CPU. Needs ``torch`` in the training image.
"""

from __future__ import annotations

from typing import Any

from toque.trainer import context

LABEL = "target"
GROUP = "size_group"


def train(ctx: context.TrainContext) -> context.Result:
    import torch
    from sklearn import model_selection, preprocessing

    frame = ctx.datasets["train"].frame()
    features = [c for c in frame.columns if c not in (LABEL, GROUP)]
    train_rows, val_rows = model_selection.train_test_split(
        frame, test_size=0.25, random_state=0, stratify=frame[LABEL]
    )
    scaler = preprocessing.StandardScaler().fit(train_rows[features])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ctx.logger.info("training on %s", device)
    hidden = int(ctx.params.get("hidden", 64))
    model = torch.nn.Sequential(
        torch.nn.Linear(len(features), hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
    ).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=float(ctx.params.get("lr", 1e-3)))
    x = torch.tensor(scaler.transform(train_rows[features]), dtype=torch.float32, device=device)
    y = torch.tensor(train_rows[LABEL].values, dtype=torch.float32, device=device)[:, None]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(int(ctx.params.get("epochs", 50))):
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
        ctx.log_metric("train_loss", float(loss), step=epoch)

    def accuracy(rows: Any) -> float:
        with torch.no_grad():
            xs = torch.tensor(scaler.transform(rows[features]), dtype=torch.float32,
                              device=device)
            predicted = (model(xs) > 0).float().cpu().numpy().ravel()
        return float((predicted == rows[LABEL].values).mean())

    ctx.log_metric("train_accuracy", accuracy(train_rows))
    ctx.log_metric("val_accuracy", accuracy(val_rows))
    return context.Result(model=model.cpu())
