"""The weights step against a hub that lists file names pointing outside the model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from moondream_iac.errors import WeightsError
from moondream_iac.testing.fake_hub import FakeHub
from moondream_iac.weights.layout import WeightsLayout
from moondream_iac.weights.progress import QuietProgress
from moondream_iac.weights.sync import sync_weights

REPO = "acme/hostile"
VICTIM_TEXT = b"the victim's own content\n"


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as fake_hub:
        yield fake_hub


def publish(hub: FakeHub, tag: str, contents: dict[str, bytes]) -> str:
    return hub.add_files(REPO, tag, {"config.json": b"{}\n", **contents})


def sync(hub: FakeHub, tag: str, root: Path):
    return sync_weights(REPO, tag, root, endpoint=hub.url, progress=QuietProgress())


def test_relative_escape_rejected(hub, tmp_path):
    root = tmp_path / "weights"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM_TEXT)
    # <root>/models/acme--hostile/<sha>/../../../../victim.txt is tmp_path/victim.txt.
    name = "../../../../victim.txt"
    publish(hub, "relative", {name: b"attacker content\n"})

    with pytest.raises(WeightsError) as caught:
        sync(hub, "relative", root)

    assert name in str(caught.value)
    assert hub.url in str(caught.value)
    assert victim.read_bytes() == VICTIM_TEXT


def test_absolute_name_rejected(hub, tmp_path):
    victim = tmp_path / "absolute-victim.txt"
    victim.write_bytes(VICTIM_TEXT)
    name = str(victim)
    publish(hub, "absolute", {name: b"attacker content\n"})

    with pytest.raises(WeightsError) as caught:
        sync(hub, "absolute", tmp_path / "weights")

    assert name in str(caught.value)
    assert "absolute" in str(caught.value)
    assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize(("name", "reason"), [
    ("sub\\..\\..\\x.txt", "backslash"),
    ("a//b.txt", "empty"),
    ("./a.txt", "'.'"),
    ("a/\0.txt", "NUL"),
    ("sub/../x.txt", "'..'"),
])
def test_malformed_names_rejected(hub, tmp_path, name, reason):
    tag = f"malformed-{abs(hash(name))}"
    publish(hub, tag, {name: b"attacker content\n"})

    with pytest.raises(WeightsError) as caught:
        sync(hub, tag, tmp_path / "weights")

    assert repr(name) in str(caught.value)
    assert reason in str(caught.value)
    assert not list((tmp_path / "weights").rglob("*.weights.lock"))


def test_symlink_inside_model_folder_not_followed(hub, tmp_path):
    root = tmp_path / "weights"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(VICTIM_TEXT)
    sha = publish(hub, "linked", {"sub/victim.txt": b"attacker content\n"})
    model_dir = WeightsLayout(root).model_dir(REPO, sha)
    model_dir.mkdir(parents=True)
    (model_dir / "sub").symlink_to(outside)

    with pytest.raises(WeightsError) as caught:
        sync(hub, "linked", root)

    assert "sub/victim.txt" in str(caught.value)
    assert "symbolic link" in str(caught.value)
    assert victim.read_bytes() == VICTIM_TEXT


def test_plain_nested_names_accepted(hub, tmp_path):
    root = tmp_path / "weights"
    publish(hub, "nested", {"sub/dir/a.json": b"[1]\n", ".hidden": b"x"})

    lock = sync(hub, "nested", root)

    model_dir = WeightsLayout(root).model_dir(REPO, lock.sha)
    assert (model_dir / "sub" / "dir" / "a.json").read_bytes() == b"[1]\n"
    assert (model_dir / ".hidden").read_bytes() == b"x"
    assert sorted(lock.files) == [".hidden", "config.json", "sub/dir/a.json"]
