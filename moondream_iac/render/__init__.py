"""Render a DeploySpec into the Python file of its Modal app (jinja2 templates)."""

from moondream_iac.render.renderer import render_app, render_to_dir

__all__ = ["render_app", "render_to_dir"]
