"""Declarative deploy.yaml to a self-hosted Moondream endpoint on Modal."""

__version__ = "0.1.0"
