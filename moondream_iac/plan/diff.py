"""Field-by-field difference between two normalised specs.

Both sides are normalised specs (every default written out), so a default written
explicitly in the file compares equal to the same default left out. Lists such as
``gpu.fallbacks`` compare as whole values, because their order matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moondream_iac.plan.classes import ChangeClass, classify

_MISSING = object()


@dataclass(frozen=True)
class FieldChange:
    """One changed field: ``action`` is create, update or delete."""

    path: str
    action: str
    before: Any
    after: Any
    change_class: ChangeClass

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "class": self.change_class.label,
            "effect": self.change_class.effect,
        }


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``{dotted.path: value}`` for every leaf of nested mappings."""
    leaves: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            leaves.update(flatten(value, path + "."))
        else:
            leaves[path] = list(value) if isinstance(value, tuple) else value
    return leaves


def diff_specs(
    desired: Mapping[str, Any], applied: Mapping[str, Any] | None, *, target: str
) -> list[FieldChange]:
    """Return the changes that take ``applied`` to ``desired``, sorted by field path.

    With no applied spec, every desired field is a create of class ``recreate``.
    """
    after = flatten(desired)
    if applied is None:
        return [FieldChange(path, "create", None, value, ChangeClass.RECREATE)
                for path, value in sorted(after.items())]

    before = flatten(applied)
    changes = []
    for path in sorted(set(after) | set(before)):
        old = before.get(path, _MISSING)
        new = after.get(path, _MISSING)
        if old == new:
            continue
        action = "update"
        if old is _MISSING:
            action = "create"
        elif new is _MISSING:
            action = "delete"
        changes.append(FieldChange(
            path, action,
            None if old is _MISSING else old,
            None if new is _MISSING else new,
            classify(path, target),
        ))
    return changes
