"""Download a pinned model revision and its tokenizer onto a root folder, lock it, and activate it.

The steps of ``sync_weights``:

1. Check the revision against the revision table (unknown tags of a listed repo fail).
2. Take the root's sync lock, so two syncs on one root run one after the other.
3. If a complete lock for this revision exists and the files still match it, stop there:
   no request reaches the hub, which is also how an offline rerun works.
4. Resolve the revision to a commit sha, download the files that are missing or differ
   (a partial file resumes), hash each one and compare it with the hub's digest.
5. Download the tokenizer repo the model code loads into the hub cache on the root.
6. Write the lock, then switch the repo's active pointer to the new snapshot.

A changed revision downloads into a new folder beside the old one, and the pointer moves
only after step 6, so a server reading the pointer never sees a half-written snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from moondream_iac.errors import WeightsError
from moondream_iac.weights import hub
from moondream_iac.weights.hashing import digest_file
from moondream_iac.weights.hub import DownloadInterrupted, HubUnreachable, RemoteFile, RemoteSnapshot
from moondream_iac.weights.layout import WeightsLayout, write_atomic
from moondream_iac.weights.lock import (HUB_CHECK_BLOB, HUB_CHECK_LFS, LockedFile, LockedTokenizer,
                                        WeightsLock, pin_difference, read_lock, read_pinned_lock,
                                        verify_model_dir, write_lock)
from moondream_iac.weights.progress import ProgressReporter, format_bytes, make_progress
from moondream_iac.weights.revisions import (RevisionInfo, format_known, info_for_commit,
                                             is_commit_sha, known_revisions, lookup_revision)

logger = logging.getLogger("moondream_iac.weights")

DEFAULT_LOCK_TIMEOUT_S = 1800.0
DEFAULT_RETRIES = 2
POLL_INTERVAL_S = 0.5


def sync_weights(
    repo: str,
    revision: str,
    root: Path,
    *,
    token: str | None = None,
    lock_out: Path | None = None,
    progress: ProgressReporter | None = None,
    endpoint: str | None = None,
    retries: int = DEFAULT_RETRIES,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    pinned: WeightsLock | None = None,
) -> WeightsLock:
    """Make ``root`` hold ``repo`` at ``revision``, verified, and return its lock.

    ``token`` is a hub token value (read by the caller from a secret); it is sent to the
    hub only and never logged. ``endpoint`` defaults to HF_ENDPOINT, read at call time.
    ``retries`` is how many times an interrupted download is resumed within this call.

    When ``lock_out`` is given, the lock is also written there (beside deploy.yaml). A
    lock already at ``lock_out`` for the same repo and revision pins the weights: the
    resolved commit and every file must match it, or WeightsError explains how to accept
    the change. A lock there for another repo or revision is replaced. ``pinned`` pins
    the same way without a file, for a caller that keeps weights.lock on another machine
    (the Modal weights function); messages then name it weights.lock.
    """
    info = check_revision(repo, revision)
    layout = WeightsLayout(root)
    reporter = progress if progress is not None else make_progress()
    pin = _read_pin(Path(lock_out), repo, revision) if lock_out is not None else None
    if pinned is not None and (pinned.repo, pinned.revision) == (repo, revision):
        pin = _Pin(lock=pinned, path=Path(PINNED_LOCK_NAME))
    context = _SyncContext(
        repo=repo, revision=revision, info=info, layout=layout, token=token,
        endpoint=hub.resolve_endpoint(endpoint), progress=reporter, retries=max(retries, 0),
        pin=pin,
    )

    _make_dirs(layout.root)
    with hold_sync_lock(layout, repo, revision, timeout_s=lock_timeout_s):
        lock = context.run()

    # An unchanged pin is left as it is, so a committed weights.lock shows no diff.
    if lock_out is not None and pin is None:
        write_lock(lock, Path(lock_out))
    return lock


# The name messages use for a pinned lock that was passed in rather than read from a file.
PINNED_LOCK_NAME = "weights.lock"


@dataclass(frozen=True)
class _Pin:
    """A weights lock beside deploy.yaml that pins this repo and revision, and its path."""

    lock: WeightsLock
    path: Path


def _read_pin(path: Path, repo: str, revision: str) -> _Pin | None:
    pinned = read_pinned_lock(path)
    if pinned is None or (pinned.repo, pinned.revision) != (repo, revision):
        return None
    return _Pin(lock=pinned, path=path)


def check_revision(repo: str, revision: str) -> RevisionInfo | None:
    """Return the table entry for ``repo``@``revision``; raise WeightsError for an unknown tag.

    A repo the table does not list accepts any revision and gets None. A commit sha that
    the table does not record is accepted with a warning.
    """
    if not known_revisions(repo):
        return None

    info = lookup_revision(repo, revision)
    if info is not None:
        return info
    if is_commit_sha(revision):
        logger.warning(
            "revision %s of %s is a commit sha the revision table does not list; "
            "loading it with the requirements of the newest supported tag", revision, repo,
        )
        return info_for_commit(repo, revision)
    raise WeightsError(
        f"unknown revision {revision!r} of {repo}; known revisions: {format_known(repo)}, "
        "or a full 40-character commit sha"
    )


def is_immutable(repo: str, revision: str) -> bool:
    """Return whether ``revision`` always names the same commit: a sha, or a dated tag in the table."""
    return is_commit_sha(revision) or lookup_revision(repo, revision) is not None


@contextmanager
def hold_sync_lock(layout: WeightsLayout, repo: str, revision: str, *, timeout_s: float) -> Iterator[None]:
    """Hold the root's sync lock, recording pid, host and time beside it for a waiting process.

    NOTE: the lock is an flock on a file of the root. It excludes processes that share a
    kernel (one machine, one container), not containers that mount the same Modal volume.
    """
    from filelock import FileLock, Timeout

    file_lock = FileLock(str(layout.sync_lock_path), timeout=timeout_s)
    try:
        file_lock.acquire()
    except Timeout:
        raise WeightsError(
            f"another weights sync holds {layout.sync_lock_path} ({_describe_holder(layout)}) "
            f"and did not release it within {timeout_s:.0f} s; wait for it to finish and rerun "
            "(the lock is released when that process exits)"
        ) from None
    except OSError as error:
        raise _os_error(error, layout.sync_lock_path, None) from error

    try:
        holder = {
            "pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "repo": repo, "revision": revision,
        }
        write_atomic(layout.sync_holder_path, json.dumps(holder, sort_keys=True) + "\n")
        yield
    finally:
        layout.sync_holder_path.unlink(missing_ok=True)
        file_lock.release()


class _SyncContext:
    """One sync run: the settings, and the steps that share them."""

    def __init__(self, *, repo: str, revision: str, info: RevisionInfo | None, layout: WeightsLayout,
                 token: str | None, endpoint: str, progress: ProgressReporter, retries: int,
                 pin: _Pin | None = None) -> None:
        self.repo = repo
        self.revision = revision
        self.info = info
        self.layout = layout
        self.token = token
        self.endpoint = endpoint
        self.progress = progress
        self.retries = retries
        self.pin = pin

    def run(self) -> WeightsLock:
        local = self._complete_local_lock()
        if local is not None:
            return local

        if hub.offline_requested():
            raise WeightsError(
                f"HF_HUB_OFFLINE is set and {self.repo}@{self.revision} has no complete, verified "
                f"weights under {self.layout.root}; unset HF_HUB_OFFLINE and rerun apply"
            )
        try:
            remote = hub.resolve_snapshot(self.repo, self.revision, endpoint=self.endpoint, token=self.token)
        except HubUnreachable as error:
            fallback = self._complete_local_lock(allow_moving=True)
            if fallback is not None:
                logger.warning("cannot reach the hub at %s (%s); using the local weights of %s@%s "
                               "at commit %s, which the hub may have moved since",
                               self.endpoint, error, self.repo, self.revision, fallback.sha)
                return fallback
            raise WeightsError(
                f"cannot reach the hub at {self.endpoint} ({error}) and {self.repo}@{self.revision} "
                f"has no complete, verified weights under {self.layout.root}; rerun apply when the "
                "hub is reachable, or set HF_ENDPOINT to a mirror"
            ) from None

        self._check_pin_remote(remote)
        model_dir = self.layout.model_dir(self.repo, remote.sha)
        files = self._download_snapshot(remote, model_dir)
        tokenizer = self._sync_tokenizer()

        lock = WeightsLock(repo=self.repo, revision=self.revision, sha=remote.sha,
                           files=files, tokenizer=tokenizer)
        self._check_pin(lock)
        write_lock(lock, self.layout.lock_path(self.repo, remote.sha))
        self.layout.switch_active(self.repo, self.revision, remote.sha)
        logger.info("weights %s@%s locked at commit %s (%s in %d files)", self.repo, self.revision,
                    remote.sha, format_bytes(lock.total_bytes), len(files))
        return lock

    # Step 3: reuse a complete local snapshot.

    def _complete_local_lock(self, *, allow_moving: bool = False) -> WeightsLock | None:
        """Return the lock of a complete local copy of this revision, after verifying its files.

        A revision that can move (a branch) gets None unless ``allow_moving`` is set or
        HF_HUB_OFFLINE is set.
        """
        candidates = [lock for lock in self._local_locks()
                      if self.revision in (lock.revision, lock.sha)
                      and (self.pin is None or lock.sha == self.pin.lock.sha)]
        if not candidates:
            return None
        if not (allow_moving or is_immutable(self.repo, self.revision) or hub.offline_requested()):
            # A branch such as "main" can move: ask the hub which commit it names now.
            return None

        lock = candidates[0]
        model_dir = self.layout.model_dir(self.repo, lock.sha)
        try:
            verify_model_dir(model_dir, self.layout.lock_path(self.repo, lock.sha))
        except WeightsError as error:
            logger.warning("local weights of %s@%s failed verification, downloading again: %s",
                           self.repo, self.revision, error)
            return None

        self._check_pin(lock)
        active = self.layout.read_active(self.repo)
        if active is None or active.sha != lock.sha:
            self.layout.switch_active(self.repo, lock.revision, lock.sha)
        logger.info("weights %s@%s already complete at commit %s; nothing to download",
                    self.repo, self.revision, lock.sha)
        return lock

    def _local_locks(self) -> list[WeightsLock]:
        locks = []
        for path in self.layout.lock_paths(self.repo):
            try:
                locks.append(read_lock(path))
            except WeightsError as error:
                logger.warning("ignoring unreadable weights lock %s: %s", path, error)
        return locks

    # The lock beside deploy.yaml.

    def _check_pin_remote(self, remote: RemoteSnapshot) -> None:
        """Raise WeightsError before any download when the hub's commit or files differ from the pin."""
        if self.pin is None:
            return
        pinned, path = self.pin.lock, self.pin.path
        if remote.sha != pinned.sha:
            raise WeightsError(
                f"the hub at {self.endpoint} moved {self.repo}@{self.revision} from commit "
                f"{pinned.sha} ({path}) to {remote.sha}; to accept the new weights, delete "
                f"{path} or set model.revision to {remote.sha}, then rerun apply; to keep the "
                f"pinned weights, set model.revision to {pinned.sha}"
            )

        listed = {item.path: item for item in remote.files}
        difference = None
        if set(listed) != set(pinned.files):
            names = sorted(set(listed) ^ set(pinned.files))
            difference = f"the hub lists the files differently (first difference: {names[0]})"
        else:
            for name in sorted(listed):
                entry, item = pinned.files[name], listed[name]
                if (entry.size, entry.hub_oid) != (item.size, item.etag):
                    difference = (f"the hub lists {name} with {item.size} bytes and digest "
                                  f"{item.etag}, the lock pins {entry.size} bytes and {entry.hub_oid}")
                    break
        if difference is not None:
            self._raise_pin_mismatch(difference)

    def _check_pin(self, lock: WeightsLock) -> None:
        """Raise WeightsError when a complete ``lock`` differs from the pin in any file hash."""
        if self.pin is None:
            return
        difference = pin_difference(self.pin.lock, lock)
        if difference is not None:
            self._raise_pin_mismatch(difference)

    def _raise_pin_mismatch(self, difference: str) -> None:
        path = self.pin.path
        raise WeightsError(
            f"{path} pins {self.repo}@{self.revision} at commit {self.pin.lock.sha}, but "
            f"{difference}; restore {path} from version control, or delete it to accept "
            "the hub's files, then rerun apply"
        )

    # Step 4: the model snapshot.

    def _download_snapshot(self, remote: RemoteSnapshot, model_dir: Path) -> dict[str, LockedFile]:
        _make_dirs(model_dir)
        locked: dict[str, LockedFile] = {}
        missing: list[RemoteFile] = []
        for item in remote.files:
            existing = _check_existing(self._confined(model_dir, item, remote), item)
            if existing is not None:
                locked[item.path] = existing
            else:
                missing.append(item)

        needed = sum(item.size - _partial_bytes(model_dir, item) for item in missing)
        _check_free_space(model_dir, needed)

        present = remote.total_bytes - sum(item.size for item in missing)
        label = f"{self.repo}@{self.revision}"
        with _poll_progress(self.progress, label, remote.total_bytes, present, model_dir, missing):
            for item in missing:
                locked[item.path] = self._fetch_verified(remote, item, model_dir)
        return locked

    def _fetch_verified(self, remote: RemoteSnapshot, item: RemoteFile, model_dir: Path,
                        *, local: bool = True) -> LockedFile:
        """Download one file, hash it, and download it once more if the hash differs from the hub's."""
        for attempt in (1, 2):
            path = self._fetch_with_retries(remote, item, model_dir if local else None)
            locked = _compare_with_hub(path, item)
            if locked is not None:
                return locked

            logger.warning("%s of %s@%s does not match the hub's digest (attempt %d); downloading it again",
                           item.path, remote.repo, remote.sha, attempt)
            _remove_download(path)

        raise WeightsError(
            f"{item.path} of {remote.repo}@{remote.sha} from {self.endpoint} does not match the "
            f"digest the hub lists for it ({item.etag}) after two downloads; the hub or a proxy "
            "serves different bytes, so check HF_ENDPOINT and any proxy, then rerun apply"
        )

    def _fetch_with_retries(self, remote: RemoteSnapshot, item: RemoteFile, local_dir: Path | None) -> Path:
        for attempt in range(self.retries + 1):
            try:
                return hub.download_file(
                    remote.repo, remote.sha, item.path, endpoint=self.endpoint, token=self.token,
                    hub_cache=self.layout.hub_cache, local_dir=local_dir,
                )
            except DownloadInterrupted as error:
                if attempt < self.retries:
                    logger.warning("%s; resuming (retry %d of %d)", error, attempt + 1, self.retries)
                    continue
                raise WeightsError(
                    f"{error}; the partial file is kept and the next apply resumes it"
                ) from None
            except HubUnreachable as error:
                raise WeightsError(
                    f"lost the hub at {self.endpoint} while downloading {item.path} of "
                    f"{remote.repo}@{remote.sha} ({error}); rerun apply to resume"
                ) from None
            except OSError as error:
                target = (local_dir or self.layout.hub_cache) / item.path
                raise _os_error(error, target, item.size) from error
        raise AssertionError("unreachable")

    def _confined(self, folder: Path, item: RemoteFile, remote: RemoteSnapshot,
                  *, within: Path | None = None) -> Path:
        """Return ``folder / item.path`` after checking that it resolves inside ``within``.

        ``within`` defaults to ``folder``. The hub cache passes the repo's storage folder,
        because its snapshot files are symbolic links to blobs beside the snapshots. The
        name check repeats the one on the hub's listing, and resolving symbolic links
        keeps a link already on disk from leading a delete or a write outside.
        """
        hub.check_file_name(item.path, repo=remote.repo, sha=remote.sha, endpoint=self.endpoint)
        path = folder / item.path
        allowed = within if within is not None else folder
        resolved = path.resolve()
        if not resolved.is_relative_to(allowed.resolve()):
            raise WeightsError(
                f"the file {item.path!r} of {remote.repo}@{remote.sha} from {self.endpoint} "
                f"resolves to {resolved}, outside {allowed}, through a symbolic link; "
                f"remove the link under {folder} and rerun apply"
            )
        return path

    # Step 5: the tokenizer repo.

    def _sync_tokenizer(self) -> LockedTokenizer | None:
        info = self.info
        if info is None or info.tokenizer_in_model_repo:
            return None

        try:
            remote = hub.resolve_snapshot(info.tokenizer_repo, info.tokenizer_revision,
                                          endpoint=self.endpoint, token=self.token)
        except HubUnreachable as error:
            raise WeightsError(
                f"cannot reach the hub at {self.endpoint} ({error}) to download the tokenizer "
                f"{info.tokenizer_repo}@{info.tokenizer_revision}; rerun apply when it is reachable, "
                "or set HF_ENDPOINT to a mirror"
            ) from None

        by_path = {item.path: item for item in remote.files}
        absent = [name for name in info.tokenizer_files if name not in by_path]
        if absent:
            raise WeightsError(
                f"tokenizer {info.tokenizer_repo}@{info.tokenizer_revision} has no {', '.join(absent)} "
                f"on {self.endpoint}; the revision table entry for {self.repo}@{self.revision} is wrong"
            )

        files = {}
        snapshot_dir = self.layout.tokenizer_snapshot_dir(remote.repo, remote.sha)
        for name in info.tokenizer_files:
            path = self._confined(snapshot_dir, by_path[name], remote, within=snapshot_dir.parent.parent)
            existing = _check_existing(path, by_path[name])
            files[name] = existing or self._fetch_verified(remote, by_path[name], snapshot_dir, local=False)

        # The model code asks for the tag, so the cache must map the tag to the commit.
        write_atomic(self.layout.tokenizer_ref_path(remote.repo, info.tokenizer_revision), remote.sha)
        return LockedTokenizer(repo=remote.repo, revision=info.tokenizer_revision,
                               sha=remote.sha, files=files)


def _check_existing(path: Path, item: RemoteFile) -> LockedFile | None:
    """Return the locked entry of a file already on disk that matches the hub, else None.

    A file that exists but differs is deleted, so the download starts clean.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    locked = _compare_with_hub(path, item) if size == item.size else None
    if locked is None:
        logger.warning("%s differs from the hub's copy; downloading it again", path)
        _remove_download(path)
    return locked


def _compare_with_hub(path: Path, item: RemoteFile) -> LockedFile | None:
    """Hash ``path`` and return its locked entry when it matches the hub's digest, else None."""
    digest = digest_file(path, git_blob=item.lfs_sha256 is None)
    if digest.size != item.size:
        return None
    if item.lfs_sha256 is not None:
        if digest.sha256 != item.lfs_sha256:
            return None
        return LockedFile(size=digest.size, sha256=digest.sha256, hub_check=HUB_CHECK_LFS,
                          hub_oid=item.lfs_sha256)
    if digest.git_blob_sha1 != item.blob_id:
        return None
    return LockedFile(size=digest.size, sha256=digest.sha256, hub_check=HUB_CHECK_BLOB,
                      hub_oid=item.blob_id)


def _remove_download(path: Path) -> None:
    """Delete a downloaded file; in the hub cache also delete the blob its snapshot link points to."""
    if path.is_symlink():
        path.resolve().unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _partial_bytes(model_dir: Path, item: RemoteFile) -> int:
    total = 0
    for partial in hub.partial_download_paths(model_dir, item):
        try:
            total += partial.stat().st_size
        except FileNotFoundError:
            pass
    return total


def _done_bytes(model_dir: Path, files: list[RemoteFile]) -> tuple[int, str]:
    done = 0
    current = ""
    for item in files:
        try:
            done += (model_dir / item.path).stat().st_size
            continue
        except FileNotFoundError:
            pass
        partial = _partial_bytes(model_dir, item)
        if partial:
            current = item.path
        done += partial
    return done, current


@contextmanager
def _poll_progress(reporter: ProgressReporter, label: str, total: int, present: int,
                   model_dir: Path, missing: list[RemoteFile]) -> Iterator[None]:
    """Report progress from the sizes of the files being written, polled from a thread.

    huggingface_hub offers no byte callback, so the poller reads the sizes of the partial
    and finished files every POLL_INTERVAL_S seconds.
    """
    reporter.start(label, total, present + _done_bytes(model_dir, missing)[0])
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(POLL_INTERVAL_S):
            done, current = _done_bytes(model_dir, missing)
            reporter.update(present + done, current)

    thread = threading.Thread(target=poll, name="weights-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        reporter.finish(present + _done_bytes(model_dir, missing)[0])


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise WeightsError(
            f"not enough space under {folder}: the weights need {needed} more bytes "
            f"({format_bytes(needed)}) and {free} bytes ({format_bytes(free)}) are free; free space "
            "or use a larger volume, then rerun apply"
        )


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _os_error(error, path, None) from error


def _os_error(error: OSError, path: Path, needed: int | None) -> WeightsError:
    """Turn a disk-full or permission OSError into a WeightsError naming the path and the bytes needed."""
    need = f"; the file needs {needed} bytes ({format_bytes(needed)})" if needed is not None else ""
    if hub.hub_error_is_disk_full(error):
        return WeightsError(
            f"no space left on the device of {path}{need}; free space or use a larger volume, "
            "then rerun apply"
        )
    if hub.hub_error_is_permission(error):
        return WeightsError(
            f"cannot write {path}: {error.strerror or error}{need}; make the weights folder "
            "writable by this user, or choose another one, then rerun apply"
        )
    return WeightsError(f"cannot write {path}: {error.strerror or error}{need}")


def _describe_holder(layout: WeightsLayout) -> str:
    try:
        holder = json.loads(layout.sync_holder_path.read_text("utf-8"))
    except (OSError, ValueError):
        return "holder unknown"
    return (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}, "
            f"syncing {holder.get('repo')}@{holder.get('revision')}")
