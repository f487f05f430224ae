"""Entry point for ``python -m engine``."""

from engine.cli import command

raise SystemExit(command())
