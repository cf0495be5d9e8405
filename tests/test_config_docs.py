"""docs/configuration.md is generated from the schema and must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from moondream_iac.spec.schema import DeploySpec

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
SCRIPT = ROOT / "scripts" / "gen_config_docs.py"


def test_configuration_page_fresh():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 0, result.stderr


def test_page_lists_every_field():
    page = PAGE.read_text(encoding="utf-8")

    for section, info in DeploySpec.model_fields.items():
        annotation = info.annotation
        nested = getattr(annotation, "model_fields", None)
        if nested is None:
            assert f"| `{section}` |" in page
            continue
        assert f"## `{section}`" in page
        for field in nested:
            assert f"| `{section}.{field}` |" in page


def test_page_shows_defaults_and_limits():
    page = PAGE.read_text(encoding="utf-8")

    assert ("| `autoscaling.scaledown_window` | integer | seconds | `300` | 2..3600 |"
            in page)
    assert "| `gpu.count` | integer | GPUs | `1` | 1..8 |" in page
    assert "| `server.max_body_mb` | integer | MiB | `20` | 1..512 |" in page


def test_descriptions_leave_defaults_to_schema():
    for section in DeploySpec.model_fields.values():
        nested = getattr(section.annotation, "model_fields", {})
        for name, info in nested.items():
            assert "Default" not in (info.description or ""), name
