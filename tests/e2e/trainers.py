"""Training functions the end-to-end tests run in real pods (shipped in the code snapshot)."""

from __future__ import annotations

from toque.trainer import context


def explode(ctx: context.TrainContext) -> context.Result:
    frame = ctx.datasets["train"].frame()
    raise ValueError(f"column 'age' missing from {len(frame.columns)} columns")
