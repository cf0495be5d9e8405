"""Change classes, and the one table that maps each spec field to the class of its change.

Classes, cheapest first:

- ``record``: nothing deployed changes; apply only writes the record.
- ``autoscaler``: a live update of the running app, no redeploy
  (Modal's ``Function.update_autoscaler``).
- ``redeploy``: a rolling redeploy of the rendered app.
- ``weights``: the new weights are synced to the volume, then a rolling redeploy.
- ``recreate``: a new app, volume or target; the old one keeps running until destroyed.
"""

from __future__ import annotations

from enum import IntEnum


class ChangeClass(IntEnum):
    """A change class; a larger value costs more, and a plan does what its largest needs."""

    RECORD = 0
    AUTOSCALER = 1
    REDEPLOY = 2
    WEIGHTS = 3
    RECREATE = 4

    @property
    def label(self) -> str:
        """The lowercase name used in the plan's JSON and text."""
        return self.name.lower()

    @property
    def effect(self) -> str:
        """What applying a change of this class does, for the text output."""
        return EFFECTS[self]


EFFECTS = {
    ChangeClass.RECORD: "record only, nothing deployed changes",
    ChangeClass.AUTOSCALER: "live update, no redeploy",
    ChangeClass.REDEPLOY: "rolling redeploy",
    ChangeClass.WEIGHTS: "weights sync + redeploy",
    ChangeClass.RECREATE: "new deployment; the old one keeps running until destroyed",
}

# Field path (or a section prefix ending in '.') -> change class. The longest matching
# entry wins; a field listed nowhere is a redeploy.
FIELD_CLASSES: dict[str, ChangeClass] = {
    "autoscaling.": ChangeClass.AUTOSCALER,
    "model.repo": ChangeClass.WEIGHTS,
    "model.revision": ChangeClass.WEIGHTS,
    "model.allow_moving_revision": ChangeClass.RECORD,
    "app.name": ChangeClass.RECREATE,
    "app.label": ChangeClass.RECREATE,
    "app.environment": ChangeClass.RECREATE,
    "volume.": ChangeClass.RECREATE,
    "target": ChangeClass.RECREATE,
    "version": ChangeClass.RECORD,
}

# Sections that only one target reads; a change there is record-only for the other.
TARGET_ONLY_SECTIONS = {"local.": "local"}


def classify(path: str, target: str) -> ChangeClass:
    """Return how a change to the field at dotted ``path`` is applied on ``target``."""
    for prefix, only_target in TARGET_ONLY_SECTIONS.items():
        if path.startswith(prefix) and target != only_target:
            return ChangeClass.RECORD

    best = ""
    for entry in FIELD_CLASSES:
        matches = path == entry or (entry.endswith(".") and path.startswith(entry))
        if matches and len(entry) > len(best):
            best = entry
    return FIELD_CLASSES[best] if best else ChangeClass.REDEPLOY
