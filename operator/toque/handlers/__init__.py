"""Thin kopf handlers per kind: observe → ``toque.reconcile`` decide → act via ``clients``.

Importing this package registers every handler with kopf.
"""

from toque.handlers import modelversion, settings, trainingjob

__all__ = ["modelversion", "settings", "trainingjob"]
