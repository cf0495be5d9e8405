"""The revision table, the weights layout, the lock file and the progress reporters."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moondream_iac.errors import WeightsError
from moondream_iac.weights.hashing import digest_file, git_blob_id
from moondream_iac.weights.layout import WeightsLayout, repo_folder
from moondream_iac.weights.lock import (LockedFile, LockedTokenizer, WeightsLock, read_lock,
                                        verify_model_dir, write_lock)
from moondream_iac.weights.progress import LogProgress, RichProgress, format_bytes, make_progress
from moondream_iac.weights.revisions import (format_known, info_for_commit, is_commit_sha,
                                             known_revisions, latest_supported, lookup_revision)

REPO = "vikhyatk/moondream2"
ALL_TAGS = [
    "2024-03-04", "2024-03-06", "2024-03-13", "2024-04-02", "2024-05-08", "2024-05-20",
    "2024-07-23", "2024-08-26", "2025-01-09", "2025-03-27", "2025-04-14", "2025-06-21",
]


def test_table_lists_all_tags_in_order():
    assert list(known_revisions(REPO)) == ALL_TAGS


def test_table_tokenizer_sources():
    table = known_revisions(REPO)
    assert (table["2025-06-21"].tokenizer_repo, table["2025-06-21"].tokenizer_revision) == (
        "moondream/starmie-v1", "2025-06-21")
    for tag in ("2025-01-09", "2025-03-27", "2025-04-14"):
        assert (table[tag].tokenizer_repo, table[tag].tokenizer_revision) == (REPO, "2024-08-26")
    for tag in ALL_TAGS[:8]:
        assert table[tag].tokenizer_in_model_repo


def test_table_support_and_packages():
    table = known_revisions(REPO)
    for tag in ALL_TAGS[:8]:
        assert table[tag].api == "2024"
        assert not table[tag].supported
        assert "2024 model API" in table[tag].reason
    for tag in ALL_TAGS[8:]:
        info = table[tag]
        assert info.api == "2025"
        assert info.supported
        assert info.transformers == ">=4.51,<5"
        names = {pin.split("==")[0] for pin in info.pip}
        assert {"torch", "transformers", "accelerate", "pillow"} <= names
    for tag in ("2025-01-09", "2025-03-27", "2025-04-14"):
        assert "pyvips" in {pin.split("==")[0] for pin in table[tag].pip}
        assert table[tag].apt == ("libvips42",)
    assert table["2025-06-21"].apt == ()
    assert table["2024-08-26"].transformers == ">=4.44,<5"
    assert table["2024-03-04"].transformers is None
    assert "not verified" in table["2024-03-04"].note


def test_transformers_pins_stay_below_5():
    from packaging.specifiers import SpecifierSet

    for info in known_revisions(REPO).values():
        version = next(pin.split("==")[1] for pin in info.pip if pin.startswith("transformers=="))
        if info.transformers:
            assert version in SpecifierSet(info.transformers), info.revision


def test_lookup_and_unknown():
    assert lookup_revision(REPO, "2025-06-21").revision == "2025-06-21"
    assert lookup_revision(REPO, "2025-13-01") is None
    assert lookup_revision("someone/else", "2025-06-21") is None
    assert known_revisions("someone/else") == {}
    assert latest_supported(REPO).revision == "2025-06-21"
    assert format_known(REPO).startswith("2024-03-04, 2024-03-06")


def test_commit_sha_detection():
    assert is_commit_sha("0123456789abcdef0123456789abcdef01234567")
    assert not is_commit_sha("0123456789ABCDEF0123456789ABCDEF01234567")
    assert not is_commit_sha("0123456789abcdef")
    assert not is_commit_sha("2025-06-21")


def test_unlisted_commit_uses_latest_requirements():
    sha = "ab" * 20
    info = info_for_commit(REPO, sha)
    assert info.revision == sha
    assert info.tokenizer_repo == "moondream/starmie-v1"
    assert "not in the revision table" in info.note
    assert info_for_commit("someone/else", sha) is None


def test_revisions_import_stays_light():
    code = ("import sys; import moondream_iac.weights.revisions; "
            "print(sorted(m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_layout_paths(tmp_path):
    layout = WeightsLayout(tmp_path)
    sha = "c" * 40
    assert layout.hf_home == tmp_path / "hf"
    assert layout.modules_cache == tmp_path / "hf" / "modules"
    assert layout.model_dir(REPO, sha) == tmp_path / "models" / "vikhyatk--moondream2" / sha
    assert layout.lock_path(REPO, sha).name == f"{sha}.weights.lock"
    env = layout.env()
    assert env["HF_HOME"] == str(tmp_path / "hf")
    assert env["HF_MODULES_CACHE"] == str(tmp_path / "hf" / "modules")
    assert env["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in layout.env(offline=False)


@pytest.mark.parametrize("repo", ["noslash", "a/b/c", "/a", "a/", "../x"])
def test_layout_rejects_bad_repo_ids(repo):
    with pytest.raises(WeightsError):
        repo_folder(repo)


def test_active_pointer_switch(tmp_path):
    layout = WeightsLayout(tmp_path)
    assert layout.read_active(REPO) is None
    layout.switch_active(REPO, "2025-04-14", "a" * 40)
    layout.switch_active(REPO, "2025-06-21", "b" * 40)

    active = layout.read_active(REPO)
    assert (active.revision, active.sha) == ("2025-06-21", "b" * 40)
    assert layout.active_model_dir(REPO) == layout.model_dir(REPO, "b" * 40)
    leftovers = [path.name for path in layout.repo_dir(REPO).iterdir() if path.name != "active.json"]
    assert leftovers == []


def test_digest_matches_git_blob_id(tmp_path):
    path = tmp_path / "file.txt"
    path.write_bytes(b"hello\n")
    digest = digest_file(path, git_blob=True)
    # `git hash-object` of "hello\n".
    assert digest.git_blob_sha1 == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_id(b"hello\n") == digest.git_blob_sha1
    assert digest.size == 6


def make_lock(folder: Path, sha: str) -> WeightsLock:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, content in (("config.json", b"{}"), ("model.safetensors", b"weights" * 100)):
        (folder / name).write_bytes(content)
        digest = digest_file(folder / name)
        files[name] = LockedFile(size=digest.size, sha256=digest.sha256, hub_check="lfs-sha256",
                                 hub_oid=digest.sha256)
    return WeightsLock(repo=REPO, revision="2025-06-21", sha=sha, files=files)


def test_lock_round_trip_is_stable(tmp_path):
    lock = make_lock(tmp_path / "model", "d" * 40)
    tokenizer = LockedTokenizer(repo="moondream/starmie-v1", revision="2025-06-21", sha="e" * 40,
                                files=dict(lock.files))
    lock = WeightsLock(repo=lock.repo, revision=lock.revision, sha=lock.sha, files=lock.files,
                       tokenizer=tokenizer, created_at="2026-12-04T00:00:00Z")
    path = tmp_path / "weights.lock"

    write_lock(lock, path)
    first = path.read_text()
    write_lock(read_lock(path), path)

    assert path.read_text() == first
    assert read_lock(path) == lock
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert list(data["files"]["config.json"]) == ["hub_check", "hub_oid", "sha256", "size"]


def test_read_lock_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        read_lock(tmp_path / "absent.lock")
    (tmp_path / "bad.lock").write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable"):
        read_lock(tmp_path / "bad.lock")
    (tmp_path / "future.lock").write_text(json.dumps({"format": 99}))
    with pytest.raises(WeightsError, match="unsupported lock format 99"):
        read_lock(tmp_path / "future.lock")


def test_verify_model_dir_cases(tmp_path):
    sha = "f" * 40
    model_dir = tmp_path / "models" / "vikhyatk--moondream2" / sha
    lock = make_lock(model_dir, sha)
    lock_path = tmp_path / "weights.lock"
    write_lock(lock, lock_path)
    verify_model_dir(model_dir, lock_path)

    other = tmp_path / "models" / "vikhyatk--moondream2" / ("0" * 40)
    other.mkdir()
    with pytest.raises(WeightsError, match="contains commit 0000"):
        verify_model_dir(other, lock_path)

    (model_dir / "config.json").unlink()
    with pytest.raises(WeightsError) as caught:
        verify_model_dir(model_dir, lock_path)
    assert f"{model_dir / 'config.json'} of {REPO}@{sha} is missing" in str(caught.value)


def test_make_progress_picks_by_terminal():
    assert isinstance(make_progress(io.StringIO()), LogProgress)
    main_fd, child_fd = os.openpty()
    try:
        with os.fdopen(child_fd, "w", closefd=False) as terminal:
            assert isinstance(make_progress(terminal), RichProgress)
    finally:
        os.close(main_fd)
        os.close(child_fd)


def test_log_progress_reports_rate_and_time_left(caplog):
    reporter = LogProgress(interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="moondream_iac.weights"):
        reporter.start("org/model@v1", 100 * 1024 * 1024, 0)
        reporter.update(50 * 1024 * 1024, "model.safetensors")
        reporter.finish(100 * 1024 * 1024)

    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "org/model@v1: 100.0 MiB to download, 0 B already present"
    assert "50.0 MiB of 100.0 MiB (50%)" in lines[1]
    assert re.search(r", \d+\.\d (KiB|MiB|GiB)/s, \d+ s left ", lines[1])
    assert "(model.safetensors)" in lines[1]
    assert lines[2].startswith("org/model@v1: done, 100.0 MiB of 100.0 MiB (100%)")


def test_rich_progress_draws_bytes(tmp_path):
    stream = io.StringIO()
    reporter = RichProgress(stream)
    reporter.start("org/model@v1", 2048, 0)
    reporter.update(1024, "model.safetensors")
    reporter.finish(2048)
    assert "org/model@v1" in stream.getvalue()
    assert "2.0/2.0 kB" in stream.getvalue()


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3.6 * 1024 ** 3) == "3.6 GiB"
