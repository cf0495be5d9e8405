"""Errors of apply and destroy; each exits with status 1 like every IacError."""

from __future__ import annotations

from moondream_iac.errors import IacError


class ApprovalRequiredError(IacError):
    """A change needs confirmation, but there is no terminal to ask on."""


class NotReadyError(IacError):
    """The deployment did not report ready within the wait time, or failed to load."""


class SmokeTestError(IacError):
    """The deployment is ready, but a smoke test request failed."""


class MissingApiKeyError(IacError):
    """The variables holding the endpoint's credentials (API key or proxy token) are unset."""
