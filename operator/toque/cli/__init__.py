"""The ``toque`` command line."""
