"""The weights lock: a resolved commit sha and the size and sha256 of every file.

A lock is written by the weights step once every file matched the hub's metadata, and
checked by ``verify_model_dir`` before the server turns ready. The JSON has sorted keys,
so the same snapshot always gives the same lock text apart from ``created_at``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from moondream_iac import __version__
from moondream_iac.errors import WeightsError
from moondream_iac.weights.hashing import digest_file
from moondream_iac.weights.layout import write_atomic
from moondream_iac.weights.revisions import is_commit_sha

logger = logging.getLogger(__name__)

LOCK_FORMAT = 1
FIX_HINT = "rerun `moondream-iac apply` to download the weights again"

# Kinds of hub digest that a file was checked against.
HUB_CHECK_LFS = "lfs-sha256"
HUB_CHECK_BLOB = "git-blob-sha1"


@dataclass(frozen=True)
class LockedFile:
    """One file of a snapshot: size, sha256 and which hub digest it was checked against."""

    size: int
    sha256: str
    hub_check: str
    hub_oid: str

    def to_dict(self) -> dict:
        return {"hub_check": self.hub_check, "hub_oid": self.hub_oid,
                "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class LockedTokenizer:
    """The tokenizer repo the model code loads, pinned to a commit, with its files."""

    repo: str
    revision: str
    sha: str
    files: dict[str, LockedFile]

    def to_dict(self) -> dict:
        return {"files": _files_to_dict(self.files), "repo": self.repo,
                "revision": self.revision, "sha": self.sha}


@dataclass(frozen=True)
class WeightsLock:
    """A model snapshot pinned by commit sha, with per-file sizes and sha256."""

    repo: str
    revision: str
    sha: str
    files: dict[str, LockedFile]
    tokenizer: LockedTokenizer | None = None
    tool: str = f"moondream-iac {__version__}"
    created_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    @property
    def total_bytes(self) -> int:
        tokenizer_bytes = sum(f.size for f in self.tokenizer.files.values()) if self.tokenizer else 0
        return sum(f.size for f in self.files.values()) + tokenizer_bytes

    def to_dict(self) -> dict:
        return {
            "created_at": self.created_at,
            "files": _files_to_dict(self.files),
            "format": LOCK_FORMAT,
            "repo": self.repo,
            "revision": self.revision,
            "sha": self.sha,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
            "tool": self.tool,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> WeightsLock:
        if data.get("format") != LOCK_FORMAT:
            raise ValueError(f"unsupported lock format {data.get('format')!r}, expected {LOCK_FORMAT}")
        tokenizer = data.get("tokenizer")
        return cls(
            repo=data["repo"],
            revision=data["revision"],
            sha=data["sha"],
            files=_files_from_dict(data["files"]),
            tokenizer=LockedTokenizer(
                repo=tokenizer["repo"], revision=tokenizer["revision"], sha=tokenizer["sha"],
                files=_files_from_dict(tokenizer["files"]),
            ) if tokenizer else None,
            tool=data["tool"],
            created_at=data["created_at"],
        )


def write_lock(lock: WeightsLock, path: Path) -> None:
    """Write ``lock`` as JSON to ``path`` atomically (temporary file, then os.replace)."""
    try:
        write_atomic(Path(path), lock.to_json())
    except OSError as error:
        raise WeightsError(f"cannot write the weights lock {path}: {error.strerror or error}") from error


def read_lock(path: Path) -> WeightsLock:
    """Read a weights lock, raising WeightsError when it is missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
        return WeightsLock.from_dict(data)
    except FileNotFoundError as error:
        raise WeightsError(f"weights lock {path} not found; {FIX_HINT}") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"weights lock {path} is unreadable ({error}); {FIX_HINT}") from error


def read_pinned_lock(path: Path) -> WeightsLock | None:
    """Read the weights lock kept beside deploy.yaml; None when there is none yet.

    Unlike ``read_lock``, the fix for a malformed file is to repair or delete it, because
    this file is the one a user commits to pin the weights.
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise WeightsError(f"cannot read the weights lock {path}: {error.strerror or error}") from error

    try:
        return WeightsLock.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise WeightsError(
            f"the weights lock {path} is not a valid lock file ({type(error).__name__}: {error}); "
            "restore it from version control, or delete it to let apply write a new one"
        ) from None


def pin_difference(pinned: WeightsLock, lock: WeightsLock) -> str | None:
    """Describe the first difference between the files of ``lock`` and those ``pinned`` records.

    Returns None when the commit, every file's size and sha256, and the tokenizer match.
    ``created_at`` and ``tool`` are not compared.
    """
    if lock.sha != pinned.sha:
        return f"the commit is {lock.sha}, the lock pins {pinned.sha}"
    difference = _files_difference(pinned.files, lock.files, label=lock.repo)
    if difference is not None:
        return difference

    if (pinned.tokenizer is None) != (lock.tokenizer is None):
        return "the lock and the revision table disagree on whether a separate tokenizer repo is used"
    if pinned.tokenizer is not None and lock.tokenizer is not None:
        if (pinned.tokenizer.repo, pinned.tokenizer.sha) != (lock.tokenizer.repo, lock.tokenizer.sha):
            return (f"the tokenizer is {lock.tokenizer.repo}@{lock.tokenizer.sha}, the lock pins "
                    f"{pinned.tokenizer.repo}@{pinned.tokenizer.sha}")
        return _files_difference(pinned.tokenizer.files, lock.tokenizer.files,
                                 label=lock.tokenizer.repo)
    return None


def _files_difference(pinned: dict[str, LockedFile], found: dict[str, LockedFile],
                      *, label: str) -> str | None:
    missing = sorted(set(pinned) - set(found))
    if missing:
        return f"{label} has no file {missing[0]}, which the lock lists"
    extra = sorted(set(found) - set(pinned))
    if extra:
        return f"{label} has a file {extra[0]}, which the lock does not list"
    for name in sorted(pinned):
        if found[name].size != pinned[name].size:
            return f"{label} file {name} has {found[name].size} bytes, the lock pins {pinned[name].size}"
        if found[name].sha256 != pinned[name].sha256:
            return (f"{label} file {name} has sha256 {found[name].sha256}, the lock pins "
                    f"{pinned[name].sha256}")
    return None


def verify_model_dir(model_dir: Path, lock_path: Path) -> None:
    """Check every file of ``model_dir`` against the lock, raising WeightsError on the first mismatch.

    Sizes are checked for all files before any file is hashed, so a missing or truncated
    file is reported without reading gigabytes first. The tokenizer snapshot is checked
    too when the hub cache can be found: ``<root>/hf/hub`` for a model folder laid out as
    ``<root>/models/<org>--<name>/<sha>``, else HF_HUB_CACHE or HF_HOME from the environment.
    """
    model_dir = Path(model_dir)
    lock = read_lock(lock_path)

    if is_commit_sha(model_dir.name) and model_dir.name != lock.sha:
        raise WeightsError(
            f"model folder {model_dir} contains commit {model_dir.name} but {lock_path} locks "
            f"{lock.repo} at {lock.sha}; {FIX_HINT}"
        )
    if not model_dir.is_dir():
        raise WeightsError(f"model folder {model_dir} not found; {FIX_HINT}")

    check_files(model_dir, lock.files, label=f"{lock.repo}@{lock.sha}")

    if lock.tokenizer is not None:
        _verify_tokenizer(model_dir, lock.tokenizer)


def check_files(folder: Path, files: dict[str, LockedFile], *, label: str) -> None:
    """Raise WeightsError naming the first file of ``files`` under ``folder`` that is missing or differs."""
    for name in sorted(files):
        path = folder / name
        expected = files[name]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise WeightsError(f"weights file {path} of {label} is missing; {FIX_HINT}") from None
        if size != expected.size:
            raise WeightsError(
                f"weights file {path} of {label} has {size} bytes, the lock expects "
                f"{expected.size}; {FIX_HINT}"
            )

    for name in sorted(files):
        path = folder / name
        found = digest_file(path).sha256
        if found != files[name].sha256:
            raise WeightsError(
                f"weights file {path} of {label} has sha256 {found}, the lock expects "
                f"{files[name].sha256}; {FIX_HINT}"
            )


def _verify_tokenizer(model_dir: Path, tokenizer: LockedTokenizer) -> None:
    hub_cache = _find_hub_cache(model_dir)
    if hub_cache is None:
        logger.warning(
            "tokenizer %s@%s not verified: no hub cache found (set HF_HOME)",
            tokenizer.repo, tokenizer.sha,
        )
        return

    storage = hub_cache / f"models--{tokenizer.repo.replace('/', '--')}"
    ref_path = storage / "refs" / tokenizer.revision
    try:
        ref_sha = ref_path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise WeightsError(
            f"tokenizer {tokenizer.repo}@{tokenizer.revision} is not in the hub cache "
            f"{hub_cache} (no {ref_path}); {FIX_HINT}"
        ) from None
    if ref_sha != tokenizer.sha:
        raise WeightsError(
            f"tokenizer ref {ref_path} points at {ref_sha}, the lock expects {tokenizer.sha}; "
            f"{FIX_HINT}"
        )

    check_files(storage / "snapshots" / tokenizer.sha, tokenizer.files,
                label=f"{tokenizer.repo}@{tokenizer.sha}")


def _find_hub_cache(model_dir: Path) -> Path | None:
    parents = model_dir.resolve().parents
    if len(parents) >= 3 and parents[1].name == "models":
        candidate = parents[2] / "hf" / "hub"
        if candidate.is_dir():
            return candidate

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return None


def _files_to_dict(files: dict[str, LockedFile]) -> dict:
    return {name: files[name].to_dict() for name in sorted(files)}


def _files_from_dict(data: dict) -> dict[str, LockedFile]:
    return {
        name: LockedFile(size=int(entry["size"]), sha256=entry["sha256"],
                         hub_check=entry["hub_check"], hub_oid=entry["hub_oid"])
        for name, entry in data.items()
    }
