"""Valid settings that are probably mistakes load with a located warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from moondream_iac.config.loader import load_config

SHA = "0123456789abcdef0123456789abcdef01234567"

# (case id, file text, the exact warning lines)
WARNINGS = [
    ("none", "gpu: A10G\n", []),
    ("request_above_cutoff", "timeouts:\n  request: 151\n",
     ["deploy.yaml:2:3: timeouts.request: 151 s is above Modal's 150 s cutoff for web "
      "requests, so longer requests fail with a 303 that no Moondream client follows; use "
      "at most 140"]),
    ("request_at_cutoff", "timeouts:\n  request: 150\n", []),
    ("request_above_cutoff_local", "target: local\ntimeouts:\n  request: 600\n", []),
    ("commit_sha", f'model:\n  revision: "{SHA}"\n',
     ["deploy.yaml:2:3: model.revision: a raw commit sha is not in the revision table, so "
      "its requirements (tokenizer repo, transformers version) are assumed to be those of "
      "the newest known release; pin a release tag to use the table's requirements"]),
    ("moving_revision", "model:\n  revision: main\n  allow_moving_revision: true\n",
     ["deploy.yaml:3:3: model.allow_moving_revision: a moving revision serves whatever the "
      "branch points at on each weights sync; pin a tag for reproducible deploys"]),
    ("open_endpoint", "auth:\n  mode: none\n",
     ["deploy.yaml:2:3: auth.mode: the endpoint is open to anyone who has its URL; use "
      "api_key or proxy unless it must be public"]),
    ("warm_containers", "autoscaling:\n  min_containers: 2\n",
     ["deploy.yaml:2:3: autoscaling.min_containers: 2 container(s) stay up and are billed "
      "around the clock; see `plan` for the cost"]),
    ("short_scaledown", "autoscaling:\n  scaledown_window: 59\n",
     ["deploy.yaml:2:3: autoscaling.scaledown_window: 59 s is likely shorter than a cold "
      "start, which gives repeated cold starts; raise it above the cold-start time, at "
      "least 60"]),
    ("scaledown_60", "autoscaling:\n  scaledown_window: 60\n", []),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in WARNINGS],
                         ids=[case[0] for case in WARNINGS])
def test_setting_warning(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy.yaml").write_text(text, encoding="utf-8")

    config = load_config(Path("deploy.yaml"), environ={})

    assert [warning.format() for warning in config.warnings] == expected
    assert all(warning.kind == "warning" for warning in config.warnings)
