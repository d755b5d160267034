"""Which types a scikit-learn model saved with skops may contain: a fixed allow-list.

skops refuses to load any type it does not trust by default (a tree's ``Tree`` object, a
calibrator, …) unless the loader names it as trusted. Naming every type a file contains
(``skops.io.get_untrusted_types``) turns that check off, and MLflow reads the list from
the model's own ``MLmodel``, so a crafted model could vouch for itself. The trainer and the
model server therefore trust only what scikit-learn itself defines: a dotted name whose
module lies under ``sklearn`` and that names a class or function defined there. Anything
else (a user's transformer, ``builtins.eval``, ``os.system``, a name re-exported into a
scikit-learn module) is foreign, and the model is refused.

Dependency-free: resolving a name imports only ``sklearn`` modules, and only when a caller
that already uses scikit-learn asks.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

# Top-level packages whose own types may be trusted.
ALLOWED_ROOTS = ("sklearn",)


def _defined_in_allowed(name: str) -> bool:
    module_name, _, attribute = name.rpartition(".")
    if not module_name or module_name.partition(".")[0] not in ALLOWED_ROOTS:
        return False
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        return False
    # The object must be scikit-learn's own, not something it imported (e.g. ``os``).
    defined = getattr(target, "__module__", None)
    is_type_or_function = isinstance(target, type) or callable(target)
    return (
        is_type_or_function
        and isinstance(defined, str)
        and defined.partition(".")[0] in ALLOWED_ROOTS
        and getattr(target, "__name__", None) == attribute
    )


def foreign(names: Iterable[str]) -> list[str]:
    """The names (sorted, distinct) that are not on the allow-list."""
    return sorted({n for n in names if not _defined_in_allowed(n)})


def trusted(names: Iterable[str]) -> list[str]:
    """The names (sorted, distinct) that are on the allow-list."""
    return sorted({n for n in names if _defined_in_allowed(n)})
