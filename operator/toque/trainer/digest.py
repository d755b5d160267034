"""Moved to ``toque.core.digest``; re-exported for callers that still import it from here."""

from toque.core.digest import CLIENT_SIDE_FILES, file_sha256, model_digest, tree_digest

__all__ = ["CLIENT_SIDE_FILES", "file_sha256", "model_digest", "tree_digest"]
