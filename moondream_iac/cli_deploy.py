"""plan, apply, status and destroy (placeholder until the deploy commands land)."""

from __future__ import annotations


def register(app, reports_errors) -> None:
    """Add the deploy commands to the CLI."""
