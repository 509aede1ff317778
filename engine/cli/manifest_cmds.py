"""CLI commands (see engine/cli/__init__.py). Commands return an int exit code."""

from __future__ import annotations

from engine.cli import cli  # noqa: F401
