"""The plan as readable text: one line per changed field, then drift, action and cost."""

from __future__ import annotations

import json
from typing import Any

SYMBOLS = {"create": "+", "update": "~", "delete": "-"}


def plan_lines(document: dict[str, Any]) -> list[str]:
    """Return the text lines of a plan document (the redacted output of Plan.to_dict)."""
    where = f"environment {document['environment']}" if document["environment"] else "base settings"
    deployment = document["deployment"]
    lines = [f"Plan for {document['file']} ({where}, target {document['target']}, "
             f"app {deployment['app']}, label {deployment['label']})"]

    lines += _change_lines(document)
    lines += _drift_lines(document["drift"])
    lines.append(_action_line(document))
    lines += _cost_lines(document["cost"])
    lines += [f"warning: {warning}" for warning in document["warnings"]]
    return lines


def _change_lines(document: dict[str, Any]) -> list[str]:
    changes = document["changes"]
    if document["action"] == "create":
        return [f"  + {change['path']}: {_value(change['after'])}" for change in changes]
    lines = []
    for change in changes:
        symbol = SYMBOLS[change["action"]]
        values = (_value(change["after"]) if change["action"] == "create"
                  else f"{_value(change['before'])} -> {_value(change['after'])}")
        lines.append(f"  {symbol} {change['path']}: {values}  "
                     f"[{change['class']}: {change['effect']}]")
    return lines


def _drift_lines(drift: dict[str, Any]) -> list[str]:
    if not drift["detected"]:
        return []
    lines = ["Drift: the live endpoint differs from the last apply:"]
    for item in drift["items"]:
        lines.append(f"  ! {item['field']}: recorded {_value(item['recorded'])}, "
                     f"live {_value(item['live'])}")
    lines.append(f"  the file wins: {drift['resolution']}")
    return lines


def _action_line(document: dict[str, Any]) -> str:
    if not document["has_changes"]:
        return "No changes. The deployment matches the file."
    if document["action"] == "create":
        summary = f"Create a new deployment ({len(document['changes'])} fields)"
    else:
        summary = f"Action: {document['action']} ({len(document['changes'])} changed fields)"
    return f"{summary}; steps: {', '.join(document['steps'])}."


def _cost_lines(costs: list[dict[str, Any]]) -> list[str]:
    if not costs:
        return []
    lines = [f"Cost estimate, GPU time only (prices as of {costs[0]['as_of']}):"]
    for index, cost in enumerate(costs):
        name = cost["environment"] or "base"
        if index == 1:
            lines.append("  Other deployments in the file, for comparison:")
        if not cost["billed"]:
            name += " (local target, no Modal bill; the figures are for Modal)"
        gpu = cost["gpu"]
        idle = _usd(cost["idle_monthly_usd"])
        line = (f"  {name}: {gpu['type']} x{gpu['count']} {_usd(gpu['usd_per_container_hour'])}/h "
                f"per active container; {idle}/month kept warm "
                f"(min_containers {cost['min_containers']})")
        if cost["max_monthly_usd"] is not None:
            line += (f"; at most {_usd(cost['max_monthly_usd'])}/month "
                     f"(max_containers {cost['max_containers']} all month)")
        elif cost["max_containers"] is None:
            line += "; no upper bound (max_containers not set)"
        lines.append(line)
        for fallback in cost["fallbacks"]:
            source = ("" if fallback["price_source"] == gpu["price_source"]
                      else f" ({fallback['price_source']})")
            lines.append(f"      fallback {fallback['type']} x{fallback['count']}: "
                         f"{_usd(fallback['usd_per_container_hour'])}/h{source}")
        lines.append(f"      price source: {gpu['price_source']}")
    return lines


def _usd(amount: float | None) -> str:
    return "unknown" if amount is None else f"${amount:,.2f}"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)
