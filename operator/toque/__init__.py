"""Toque: a Kubernetes-native MLOps platform.

The import package lives inside the plain ``operator/`` folder so that it never shadows the
standard library's ``operator`` module.
"""

__version__ = "0.1.0"
