"""Errors of the dataset store, classified by what a caller should do about them.

Raised by ``toque.data.store`` and ``toque.data.manifest``; the CLI (``toque.cli.data_cmd``)
turns them into exit codes and the trainer runtime into retry-or-fail decisions, so every
class says whether retrying can help (``transient``).
"""

from __future__ import annotations


class DataError(Exception):
    """Base of every dataset-store error; the message is meant for a user, on one line."""

    transient = False


class InvalidInput(DataError):  # noqa: N818 - names are part of the public API
    """A malformed dataset name, tag, reference, or a path that cannot be pushed."""


class DatasetNotFound(DataError):  # noqa: N818 - names are part of the public API
    """No such dataset, tag or version in the store: retrying will not make it appear."""


class CorruptedObject(DataError):  # noqa: N818 - names are part of the public API
    """A stored object is missing or its bytes do not hash to what the manifest says."""


class StoreAccessDenied(DataError):  # noqa: N818 - names are part of the public API
    """The store rejected the credentials, or they are missing."""


class StoreUnavailable(DataError):  # noqa: N818 - names are part of the public API
    """The store could not be reached or answered 5xx/timeouts: worth retrying later."""

    transient = True
