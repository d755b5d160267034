"""Thin kopf handlers per kind: observe → ``toque.reconcile`` decide → act via ``clients``.

Importing this package registers every handler with kopf.
"""

from toque.handlers import driftmonitor, modelversion, settings, trainingjob

__all__ = ["driftmonitor", "modelversion", "settings", "trainingjob"]
