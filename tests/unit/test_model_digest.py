"""The model digest the trainer records and the server checks."""

from __future__ import annotations

import pathlib

from toque.core import digest


def test_the_digest_ignores_mlflows_download_note_but_not_the_model(tmp_path: pathlib.Path) -> None:
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "sub" / "model.skops").write_bytes(b"weights")
    before = digest.model_digest(model)
    (model / "registered_model_meta").write_text("model_name: m-123\n")
    assert digest.model_digest(model) == before
    assert digest.tree_digest(model) != before
    (model / "sub" / "model.skops").write_bytes(b"weights!")
    assert digest.model_digest(model) != before
    (model / "sub" / "registered_model_meta").write_text("nested files count")
