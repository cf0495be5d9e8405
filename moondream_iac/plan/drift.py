"""Drift: differences between the last applied record and what the live endpoint reports.

The live ``/v1/health`` reports the spec hash, model repo and revision the running app
was deployed with. When they differ from the record, someone deployed or changed the app
without this tool. The file wins: apply redeploys the settings in the file.
NOTE: health does not report the autoscaler settings, so a change made with Modal's
``update_autoscaler`` outside this tool is not seen here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moondream_iac.state.record import deployed_hash

RESOLUTION = "apply deploys the file's settings, replacing the live ones"

# Health field -> how to read the same value from the record.
_COMPARED = {
    "spec_hash": deployed_hash,
    "model_repo": lambda record: (record.get("spec") or {}).get("model", {}).get("repo"),
    "revision": lambda record: (record.get("spec") or {}).get("model", {}).get("revision"),
}


@dataclass(frozen=True)
class DriftItem:
    """One value where the live endpoint and the record disagree."""

    field: str
    recorded: Any
    live: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "recorded": self.recorded, "live": self.live}


def find_drift(
    record: Mapping[str, Any] | None, health: Mapping[str, Any] | None
) -> list[DriftItem]:
    """Return the drift between ``record`` and the live ``health`` document.

    A record with no running endpoint is drift on ``endpoint``. With no record there is
    nothing to compare, so no drift.
    """
    if not record:
        return []
    if health is None:
        return [DriftItem("endpoint", "running", "not running")]

    items = []
    for field, read_recorded in _COMPARED.items():
        recorded = read_recorded(record)
        live = health.get(field)
        # A server that does not report a field is not evidence of drift.
        if live in (None, "") or recorded is None:
            continue
        if live != recorded:
            items.append(DriftItem(field, recorded, live))
    return items
