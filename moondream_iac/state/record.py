"""The applied record: what the last successful apply deployed, stored by the target.

A versioned JSON document. The plan compares the desired spec with it, and status and
rollback read it. It contains secret names only. ``redact`` also blanks any value whose
key looks like a credential, in case a target or a later field adds one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from moondream_iac import __version__
from moondream_iac.errors import TargetError
from moondream_iac.spec.schema import DeploySpec, normalised, spec_hash
from moondream_iac.state.lock import utc_now

RECORD_VERSION = 1
REDACTED = "[redacted]"

# Keys whose values may be credentials.
SECRET_KEY = re.compile(r"(key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)
# Spec fields that match SECRET_KEY but hold only the *name* of a secret or a variable.
# They must stay readable: the plan compares them and the user needs to see them.
NAME_ONLY_FIELDS = frozenset({
    "auth", "auth.mode", "auth.secret", "auth.key_env", "model.hub_token_secret", "secrets",
    "auth_mode", "key_env",
})


def build_record(
    spec: DeploySpec,
    *,
    environment: str | None,
    target: str,
    url: str,
    weights_lock: Mapping[str, Any] | None,
    smoke: Mapping[str, Any] | None,
    cold_start_seconds: float | None,
    previous: Mapping[str, Any] | None,
    details: Mapping[str, Any] | None = None,
    deployed_spec_hash: str | None = None,
) -> dict[str, Any]:
    """Build the record of a finished apply; ``previous`` is the record it replaces.

    ``deployed_spec_hash`` is the spec hash the running app was deployed with, which
    its /v1/health reports. It differs from ``spec_hash`` after an apply that changed
    only the autoscaler or the record; None means this apply deployed ``spec``.
    """
    record = {
        "record_version": RECORD_VERSION,
        "state": "applied",
        "spec": normalised(spec),
        "spec_hash": spec_hash(spec),
        "deployed_spec_hash": deployed_spec_hash or spec_hash(spec),
        "environment": environment,
        "target": target,
        "url": url,
        "weights_lock": dict(weights_lock) if weights_lock else None,
        "tool_version": __version__,
        "applied_at": utc_now(),
        "smoke": dict(smoke) if smoke else None,
        "cold_start_seconds": cold_start_seconds,
        "details": dict(details or {}),
        "previous": summarise(previous) if previous else None,
    }
    return redact(record)


def summarise(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return what rollback and status need of a record: spec, hash, revision, URL, time.

    The summary keeps the full spec, so a target that stores only one record (Modal)
    can rebuild the previous record after a rollback with ``record_from_summary``.
    """
    spec = record.get("spec") or {}
    model = spec.get("model") or {}
    weights = record.get("weights_lock") or {}
    return {
        "spec_hash": record.get("spec_hash"),
        "deployed_spec_hash": deployed_hash(record),
        "spec": spec,
        "environment": record.get("environment"),
        "target": record.get("target"),
        "applied_at": record.get("applied_at"),
        "url": record.get("url"),
        "model_repo": model.get("repo"),
        "revision": model.get("revision"),
        "weights_sha": weights.get("sha"),
        "tool_version": record.get("tool_version"),
        "details": dict(record.get("details") or {}),
    }


def record_from_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild an applied record from the ``previous`` summary of a later record.

    Used after a rollback: the smoke results and the weights file list of that older
    apply are not kept, so they come back empty.
    """
    return {
        "record_version": RECORD_VERSION,
        "state": "applied",
        "spec": summary.get("spec") or {},
        "spec_hash": summary.get("spec_hash"),
        "deployed_spec_hash": summary.get("deployed_spec_hash") or summary.get("spec_hash"),
        "environment": summary.get("environment"),
        "target": summary.get("target"),
        "url": summary.get("url"),
        "weights_lock": {"sha": summary["weights_sha"]} if summary.get("weights_sha") else None,
        "tool_version": summary.get("tool_version"),
        "applied_at": summary.get("applied_at"),
        "rolled_back_at": utc_now(),
        "smoke": None,
        "cold_start_seconds": None,
        "details": dict(summary.get("details") or {}),
        "previous": None,
    }


def mark_destroyed(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``record`` saying the deployment was stopped, and when."""
    return {**record, "state": "destroyed", "destroyed_at": utc_now()}


def check_record(data: Any, *, where: str) -> dict[str, Any] | None:
    """Return a stored record when its version is one this tool reads; None for no record.

    ``where`` names the storage place for the error message.
    """
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TargetError(f"the applied record at {where} is not a JSON object; remove it "
                          "and run apply again")
    version = data.get("record_version")
    if version != RECORD_VERSION:
        raise TargetError(
            f"the applied record at {where} has record_version {version!r}, but this tool "
            f"reads version {RECORD_VERSION}; upgrade moondream_iac, or remove the record "
            "to let the next apply start over"
        )

    problem = record_problem(data)
    if problem is not None:
        raise TargetError(
            f"the applied record at {where} is invalid: {problem}; it was edited or damaged, "
            "so remove it and run apply again, which writes a new record"
        )
    return data


# Field -> the JSON types it may have; None stands for null. Fields not listed may have
# any type, because no command reads them by attribute.
_FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "spec": (dict,),
    "state": (str,),
    "spec_hash": (str, None),
    "deployed_spec_hash": (str, None),
    "environment": (str, None),
    "target": (str, None),
    "url": (str, None),
    "tool_version": (str, None),
    "applied_at": (str, None),
    "destroyed_at": (str, None),
    "rolled_back_at": (str, None),
    "weights_lock": (dict, None),
    "smoke": (dict, None),
    "cold_start_seconds": (int, float, None),
    "details": (dict, None),
    "previous": (dict, None),
}
_STATES = ("applied", "destroyed")
_TYPE_NAMES = {dict: "a JSON object", str: "a string", int: "a number", float: "a number",
               None: "null", list: "a list", bool: "true or false"}


def record_problem(data: Mapping[str, Any]) -> str | None:
    """Return what makes a stored record unusable (a field of the wrong type), or None.

    Plan, status and rollback read these fields with ``.get`` chains, so a hand-edited
    ``"spec": "x"`` would otherwise surface as an AttributeError far from its cause.
    """
    if "spec" not in data:
        return "the field 'spec' is missing"
    for name, allowed in _FIELD_TYPES.items():
        if name in data and not _has_type(data[name], allowed):
            return _wrong_type(name, data[name], allowed)
    if data.get("state", "applied") not in _STATES:
        return f"the field 'state' is {data['state']!r}, expected one of {', '.join(_STATES)}"

    problem = _spec_problem(data["spec"], "spec")
    if problem is not None:
        return problem
    weights = data.get("weights_lock") or {}
    if not _has_type(weights.get("sha"), (str, None)):
        return _wrong_type("weights_lock.sha", weights.get("sha"), (str, None))
    previous = data.get("previous") or {}
    if not _has_type(previous.get("spec"), (dict, None)):
        return _wrong_type("previous.spec", previous.get("spec"), (dict, None))
    return _spec_problem(previous.get("spec") or {}, "previous.spec")


def _spec_problem(spec: Mapping[str, Any], prefix: str) -> str | None:
    """Check the spec fields that plan and status read: ``model`` and its repo and revision."""
    model = spec.get("model", {})
    if not isinstance(model, dict):
        return _wrong_type(f"{prefix}.model", model, (dict,))
    for name in ("repo", "revision"):
        if not _has_type(model.get(name), (str, None)):
            return _wrong_type(f"{prefix}.model.{name}", model.get(name), (str, None))
    return None


def _has_type(value: Any, allowed: tuple[type | None, ...]) -> bool:
    if value is None:
        return None in allowed
    if isinstance(value, bool):
        return bool in allowed
    return any(kind is not None and isinstance(value, kind) for kind in allowed)


def _wrong_type(name: str, value: Any, allowed: tuple[type | None, ...]) -> str:
    expected = " or ".join(dict.fromkeys(_TYPE_NAMES[kind] for kind in allowed))
    found = _TYPE_NAMES.get(type(value), type(value).__name__)
    return f"the field '{name}' is {found}, expected {expected}"


def deployed_hash(record: Mapping[str, Any]) -> str | None:
    """Return the spec hash the running app was deployed with (older records: spec_hash)."""
    return record.get("deployed_spec_hash") or record.get("spec_hash")


def is_live(record: Mapping[str, Any] | None) -> bool:
    """Return True when ``record`` describes a deployment that was applied and not destroyed."""
    return bool(record) and record.get("state", "applied") == "applied"


def redact(data: Any, *, path: str = "", values: tuple[str, ...] = ()) -> Any:
    """Return ``data`` with credential-like values replaced by ``[redacted]``.

    A value is replaced when its key looks like a credential (``SECRET_KEY``) and its
    dotted path is not a known name-only field, or when it contains one of ``values``
    (secret values known to this process, such as the API key).
    """
    if isinstance(data, Mapping):
        result = {}
        for key, value in data.items():
            child = f"{path}.{key}" if path else str(key)
            if _is_secret_key(str(key), child) and isinstance(value, (str, int, float)):
                result[key] = REDACTED
            else:
                result[key] = redact(value, path=child, values=values)
        return result
    if isinstance(data, (list, tuple)):
        return [redact(item, path=path, values=values) for item in data]
    if isinstance(data, str):
        return redact_text(data, values)
    return data


def redact_text(text: str, values: tuple[str, ...]) -> str:
    """Replace every occurrence of each non-empty value in ``values`` with ``[redacted]``."""
    for value in values:
        if value:
            text = text.replace(value, REDACTED)
    return text


def _is_secret_key(key: str, path: str) -> bool:
    if not SECRET_KEY.search(key):
        return False
    # Match a name-only field by its path suffix, because the spec sits under "spec" in
    # a record and under "previous.spec" in a record's summary of the one before.
    return not any(path == name or path.endswith("." + name) for name in NAME_ONLY_FIELDS)
