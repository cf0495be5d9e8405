"""The calls to huggingface_hub the weights step makes, with its errors turned into WeightsError.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when first imported.
These functions take the endpoint as an argument and read HF_ENDPOINT and
HF_HUB_OFFLINE again at call time, so a process that imported huggingface_hub earlier
still talks to the right hub.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from moondream_iac.errors import WeightsError

DEFAULT_ENDPOINT = "https://huggingface.co"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class RemoteFile:
    """One file of a commit as the hub describes it."""

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None

    @property
    def etag(self) -> str:
        """The ETag huggingface_hub names its partial download after: LFS sha256, else blob id."""
        return self.lfs_sha256 or self.blob_id


@dataclass(frozen=True)
class RemoteSnapshot:
    """A revision of a repo resolved to a commit sha, with its files' metadata."""

    repo: str
    revision: str
    sha: str
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)


class HubUnreachable(Exception):
    """The hub did not respond, or HF_HUB_OFFLINE forbids contacting it."""


class DownloadInterrupted(Exception):
    """A download stopped part-way; a retry resumes from the partial file."""


def resolve_endpoint(endpoint: str | None) -> str:
    """Return ``endpoint``, else HF_ENDPOINT from the environment, else the public hub."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_requested() -> bool:
    """Return whether HF_HUB_OFFLINE is set now, or was set when huggingface_hub was imported."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants is not None and constants.HF_HUB_OFFLINE)


def resolve_snapshot(repo: str, revision: str, *, endpoint: str, token: str | None) -> RemoteSnapshot:
    """Resolve ``revision`` of ``repo`` to a commit sha and list its files with sizes and digests."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with _translate_errors(repo, revision, endpoint):
        info = api.model_info(repo, revision=revision, files_metadata=True)
        if info.sha is None:
            raise WeightsError(f"the hub at {endpoint} returned no commit sha for {repo}@{revision}")
        siblings = info.siblings or []
        if siblings and all(item.size is not None and item.blob_id for item in siblings):
            files = [_from_sibling(item) for item in siblings]
        else:
            tree = api.list_repo_tree(repo, revision=info.sha, recursive=True)
            files = [_from_tree(item) for item in tree if hasattr(item, "blob_id")]

    for item in files:
        check_file_name(item.path, repo=repo, sha=info.sha, endpoint=endpoint)

    return RemoteSnapshot(repo=repo, revision=revision, sha=info.sha,
                          files=tuple(sorted(files, key=lambda item: item.path)))


def check_file_name(name: str, *, repo: str, sha: str, endpoint: str) -> None:
    """Raise WeightsError unless ``name`` is a relative POSIX path that stays inside a folder.

    The hub lists file names as it likes, and the weights step stats, deletes and writes
    ``<model folder>/<name>``. So a name that is absolute, contains a ``..``, ``.`` or empty
    part, a backslash or a NUL byte is rejected before any file is touched.
    """
    reason = _unsafe_name_reason(name)
    if reason is not None:
        raise WeightsError(
            f"the hub at {endpoint} lists a file {name!r} in {repo}@{sha}, which {reason}; "
            "the weights step only writes relative paths inside the model folder, so check "
            "HF_ENDPOINT and the repo id"
        )


def _unsafe_name_reason(name: str) -> str | None:
    if not isinstance(name, str) or not name:
        return "is empty"
    if "\0" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "contains a '..' part"
    if "" in parts or "." in parts:
        return "contains an empty or '.' part"
    return None


def download_file(
    repo: str,
    sha: str,
    name: str,
    *,
    endpoint: str,
    token: str | None,
    hub_cache: Path,
    local_dir: Path | None = None,
) -> Path:
    """Download one file of commit ``sha`` into ``local_dir``, or into the hub cache when None.

    A partial file left by an earlier attempt is resumed with an HTTP Range request.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    bars_were_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        with _translate_errors(repo, sha, endpoint, downloading=name):
            path = hf_hub_download(
                repo, name, revision=sha, endpoint=endpoint, token=token,
                cache_dir=hub_cache, local_dir=local_dir,
            )
    finally:
        if not bars_were_disabled:
            enable_progress_bars()
    return Path(path)


def partial_download_paths(local_dir: Path, item: RemoteFile) -> list[Path]:
    """Return the partial files huggingface_hub keeps for ``item`` while downloading into ``local_dir``."""
    folder = local_dir / ".cache" / "huggingface" / "download" / Path(item.path).parent
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*.{item.etag}.incomplete"))


def hub_error_is_disk_full(error: OSError) -> bool:
    return error.errno in DISK_FULL_ERRNOS


def hub_error_is_permission(error: OSError) -> bool:
    return error.errno in PERMISSION_ERRNOS


class _translate_errors:
    """Turn huggingface_hub and requests exceptions into WeightsError, HubUnreachable or DownloadInterrupted."""

    def __init__(self, repo: str, revision: str, endpoint: str, downloading: str | None = None) -> None:
        self.repo = repo
        self.revision = revision
        self.endpoint = endpoint
        self.downloading = downloading

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, (WeightsError, HubUnreachable, DownloadInterrupted)):
            return False

        translated = self._translate(error)
        if translated is None:
            return False
        raise translated from error

    def _translate(self, error: BaseException) -> Exception | None:
        import requests
        from huggingface_hub import errors as hub_errors

        where = f"{self.repo}@{self.revision}"
        if isinstance(error, hub_errors.OfflineModeIsEnabled):
            return HubUnreachable("HF_HUB_OFFLINE is set")
        if isinstance(error, hub_errors.GatedRepoError):
            return WeightsError(
                f"{self.repo} is gated on {self.endpoint}: accept its license on the hub and pass "
                "a token of that account (the `token_secret` of deploy.yaml)"
            )
        if isinstance(error, hub_errors.RepositoryNotFoundError):
            return WeightsError(
                f"repository {self.repo} not found on {self.endpoint}; check the repo id, or pass a "
                "token (the `token_secret` of deploy.yaml) if the repo is private"
            )
        if isinstance(error, hub_errors.RevisionNotFoundError):
            return WeightsError(
                f"revision {self.revision} not found in {self.repo} on {self.endpoint}; "
                "check the tag or commit sha"
            )
        if isinstance(error, hub_errors.LocalEntryNotFoundError):
            cause = error.__cause__ or error
            return HubUnreachable(_connection_cause(cause))
        if isinstance(error, hub_errors.EntryNotFoundError):
            return WeightsError(f"file {self.downloading} not found in {where} on {self.endpoint}")
        if isinstance(error, hub_errors.HfHubHTTPError):
            status = error.response.status_code if error.response is not None else "no status"
            return WeightsError(f"the hub at {self.endpoint} failed a request for {where}: HTTP {status}")

        if self.downloading is not None and isinstance(
            error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                    requests.exceptions.Timeout)
        ):
            detail = _first_line(error.args[0] if error.args else error)
            return DownloadInterrupted(f"download of {self.downloading} from {where} stopped: {detail}")
        if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return HubUnreachable(_connection_cause(error))
        if isinstance(error, OSError) and "Consistency check failed" in str(error):
            return DownloadInterrupted(f"download of {self.downloading} from {where} was cut short")
        return None


# Substrings of urllib3's nested connection errors, and the short reason each stands for.
_CONNECTION_CAUSES = (
    ("Failed to resolve", "the host name could not be resolved"),
    ("Name or service not known", "the host name could not be resolved"),
    ("Connection refused", "the connection was refused"),
    ("timed out", "the connection timed out"),
    ("Network is unreachable", "the network is unreachable"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS certificate verification failed"),
)


def _connection_cause(error: BaseException) -> str:
    """Return the short reason inside a requests/urllib3 connection error, e.g. a DNS failure."""
    text = str(error)
    for marker, reason in _CONNECTION_CAUSES:
        if marker in text:
            return reason
    return f"{type(error).__name__}: {_first_line(error)}"[:160]


def _from_sibling(item) -> RemoteFile:
    return RemoteFile(
        path=item.rfilename, size=int(item.size), blob_id=item.blob_id,
        lfs_sha256=item.lfs.sha256 if item.lfs else None,
    )


def _from_tree(item) -> RemoteFile:
    return RemoteFile(
        path=item.path, size=int(item.size), blob_id=item.blob_id,
        lfs_sha256=item.lfs.sha256 if item.lfs else None,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
