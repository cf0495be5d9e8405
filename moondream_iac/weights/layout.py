"""Paths of the weights under a root folder, which is a Modal volume mount or a local directory.

    <root>/hf/                               HF_HOME: hub cache with the tokenizer repos
    <root>/hf/modules/                       HF_MODULES_CACHE: remote model code copies
    <root>/models/<org>--<name>/<sha>/       one complete snapshot of a model repo
    <root>/models/<org>--<name>/<sha>.weights.lock
    <root>/models/<org>--<name>/active.json  the snapshot the server loads
    <root>/.sync.lock                        held by one sync at a time
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from moondream_iac.errors import WeightsError

ACTIVE_FILE = "active.json"
LOCK_SUFFIX = ".weights.lock"


@dataclass(frozen=True)
class ActiveSnapshot:
    """The content of a repo's active pointer: which snapshot the server loads."""

    repo: str
    revision: str
    sha: str
    switched_at: str


class WeightsLayout:
    """Paths of the weights under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def hf_home(self) -> Path:
        return self.root / "hf"

    @property
    def hub_cache(self) -> Path:
        return self.hf_home / "hub"

    @property
    def modules_cache(self) -> Path:
        return self.hf_home / "modules"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def sync_lock_path(self) -> Path:
        return self.root / ".sync.lock"

    @property
    def sync_holder_path(self) -> Path:
        return self.root / ".sync.lock.holder.json"

    def repo_dir(self, repo: str) -> Path:
        return self.models_dir / repo_folder(repo)

    def model_dir(self, repo: str, sha: str) -> Path:
        return self.repo_dir(repo) / sha

    def lock_path(self, repo: str, sha: str) -> Path:
        return self.repo_dir(repo) / f"{sha}{LOCK_SUFFIX}"

    def active_path(self, repo: str) -> Path:
        return self.repo_dir(repo) / ACTIVE_FILE

    def tokenizer_snapshot_dir(self, repo: str, sha: str) -> Path:
        """Return the hub-cache snapshot folder of a tokenizer repo at commit ``sha``."""
        return self.hub_cache / f"models--{repo.replace('/', '--')}" / "snapshots" / sha

    def tokenizer_ref_path(self, repo: str, revision: str) -> Path:
        """Return the hub-cache file that maps a tag of ``repo`` to its commit sha."""
        return self.hub_cache / f"models--{repo.replace('/', '--')}" / "refs" / revision

    def lock_paths(self, repo: str) -> list[Path]:
        """Return the lock files of every snapshot of ``repo`` on this root, newest first."""
        folder = self.repo_dir(repo)
        if not folder.is_dir():
            return []
        locks = [path for path in folder.iterdir() if path.name.endswith(LOCK_SUFFIX)]
        return sorted(locks, key=lambda path: path.stat().st_mtime, reverse=True)

    def env(self, *, offline: bool = True) -> dict[str, str]:
        """Return the environment the server process needs to load from this root.

        huggingface_hub and transformers read these variables once, when first imported,
        so the process must set them before importing either.
        """
        env = {
            "HF_HOME": str(self.hf_home),
            "HF_HUB_CACHE": str(self.hub_cache),
            "HF_MODULES_CACHE": str(self.modules_cache),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
            env["TRANSFORMERS_OFFLINE"] = "1"
        return env

    def read_active(self, repo: str) -> ActiveSnapshot | None:
        """Return the active snapshot of ``repo``, or None before the first complete sync."""
        path = self.active_path(repo)
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise WeightsError(
                f"cannot read the active snapshot pointer {path}: {error}; "
                "rerun apply to write it again"
            ) from error
        return ActiveSnapshot(
            repo=data["repo"], revision=data["revision"], sha=data["sha"],
            switched_at=data["switched_at"],
        )

    def switch_active(self, repo: str, revision: str, sha: str) -> ActiveSnapshot:
        """Point ``repo`` at the snapshot ``sha`` with one atomic rename.

        Call this only after the snapshot is complete and verified: a reader sees either
        the old pointer or the new one, never a partial file.
        """
        active = ActiveSnapshot(
            repo=repo, revision=revision, sha=sha,
            switched_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        text = json.dumps(vars(active), indent=2, sort_keys=True) + "\n"
        write_atomic(self.active_path(repo), text)
        return active

    def active_model_dir(self, repo: str) -> Path | None:
        """Return the folder of the active snapshot of ``repo``, or None if there is none."""
        active = self.read_active(repo)
        if active is None:
            return None
        return self.model_dir(repo, active.sha)


def repo_folder(repo: str) -> str:
    """Return the folder name of a repo id: ``org/name`` becomes ``org--name``."""
    if repo.count("/") != 1 or repo.startswith("/") or repo.endswith("/") or ".." in repo:
        raise WeightsError(
            f"invalid repo id {repo!r}: expected the form 'org/name', "
            "for example 'vikhyatk/moondream2'"
        )
    return repo.replace("/", "--")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
