"""API types of Toque's custom resources: the single source of truth for the CRD schemas.

Everything here is pure data (pydantic models and constants); ``crdgen`` turns the models into
``crds/*.yaml``.
"""
