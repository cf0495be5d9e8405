"""The interface every deploy target follows, so that adding a target touches one module.

A target is built from a loaded config. It reads and writes the applied record, reads
the live endpoint, syncs weights, deploys, changes the autoscaler in place and stops the
deployment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DeployOutcome:
    """The result of a deploy: the endpoint URL ending in /v1 and target-specific ids."""

    url: str
    details: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    """A place a deployment runs: the methods plan and apply call."""

    name: str

    def preflight(self, *, deploying: bool = True) -> None:
        """Raise TargetError in one line when the target cannot be reached or used.

        With ``deploying`` false (plan, status, destroy) only what reading the record and
        the live endpoint needs is checked, not what a deploy needs (an API key, the
        runtime packages).
        """

    def read_record(self) -> dict[str, Any] | None:
        """Return the last applied record, or None when nothing was applied."""

    def write_record(self, record: dict[str, Any]) -> None:
        """Store the applied record where the next run, from any machine, reads it."""

    def live_health(self) -> dict[str, Any] | None:
        """Return the live endpoint's /v1/health document, or None when it is not running."""

    def lock(self, holder: str) -> AbstractContextManager[None]:
        """Hold the deployment lock; raise LockHeldError naming the holder and since when."""

    def sync_weights(self) -> dict[str, Any]:
        """Make the pinned weights present and verified; return the weights lock."""

    def deploy(self, *, tag: str) -> DeployOutcome:
        """Deploy (or redeploy) the rendered app and return its URL."""

    def update_autoscaler(self) -> None:
        """Apply the spec's autoscaler settings to the running app without a redeploy."""

    def rollback(self) -> None:
        """Return to the previous deployment."""

    def destroy(self) -> None:
        """Stop the deployment."""

    def stream_logs(self) -> Iterator[str]:
        """Yield log lines, when the target has them."""
