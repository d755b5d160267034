"""The data scientist's side of Toque: project scaffold, submit, report, reproduce, status.

Pure logic where it can be, I/O through ``toque.clients`` and ``toque.data``; called by the
matching ``toque.cli.*_cmd`` modules.
"""
