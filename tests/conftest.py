"""Shared fixtures: the real local control plane (session) and the operator process."""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
