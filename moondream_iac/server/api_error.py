"""The error every request handler raises to send a JSON error response."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error, sent as ``{"error": message}`` with ``status`` and extra headers."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def unavailable(message: str, retry_after_s: int) -> ApiError:
    """Build a 503 with ``Retry-After``: Magnitude retries only on 429, 503 and 524."""
    return ApiError(503, message, headers={"Retry-After": str(retry_after_s)})
