"""The deployment lock: one apply or destroy per deployment at a time.

Two kinds share one holder document (host, pid, purpose, since):

- ``file_lock``: an OS file lock (``filelock``) for targets whose state lives on this
  machine. The OS releases it when the process dies, so it never goes stale.
- ``record_lock``: an entry in a key-value store with an atomic put-if-absent, such as a
  ``modal.Dict``, for targets whose state lives remotely. A crashed process leaves its
  entry behind, so an entry older than ``stale_after_s`` is taken over.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from moondream_iac.errors import LockHeldError

# A remote lock entry older than this is treated as left behind by a crashed run. Apply
# waits at most `timeouts.startup` (max 24 h) for readiness, so 25 h never cuts a live run.
STALE_AFTER_S = 25 * 3600


@dataclass(frozen=True)
class LockHolder:
    """The holder of a deployment lock, and since when (UTC, ISO 8601)."""

    host: str
    pid: int
    purpose: str
    since: str

    def describe(self) -> str:
        """Return ``pid P on host H (purpose) since T``, for error messages."""
        return f"pid {self.pid} on host {self.host} ({self.purpose}) since {self.since}"

    @classmethod
    def from_dict(cls, data: Any) -> LockHolder | None:
        """Parse a holder document; None when it is missing or malformed."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["host"]), int(data["pid"]), str(data["purpose"]),
                       str(data["since"]))
        except (KeyError, TypeError, ValueError):
            return None


def current_holder(purpose: str) -> LockHolder:
    """Describe this process as a lock holder doing ``purpose`` (e.g. ``apply``)."""
    return LockHolder(socket.gethostname(), os.getpid(), purpose, utc_now())


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with seconds, e.g. 2026-12-04T20:15:00Z."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


@contextmanager
def file_lock(lock_path: Path, purpose: str, *, deployment: str) -> Iterator[LockHolder]:
    """Hold an OS file lock on ``lock_path``; raise LockHeldError naming the holder.

    The holder document goes to ``<lock_path>.holder.json`` while the lock is held, so a
    second run can name who holds it. It does not wait: a held lock fails at once.
    """
    import filelock

    from moondream_iac.weights.layout import write_atomic

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder_path = lock_path.with_name(lock_path.name + ".holder.json")
    lock = filelock.FileLock(str(lock_path))

    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = _read_holder_file(holder_path)
        raise LockHeldError(_held_message(deployment, holder, how_to_clear=(
            "wait for that run to finish; the lock is released when its process exits"
        ))) from None
    except OSError as error:
        raise LockHeldError(_unusable_lock_message(deployment, lock_path, error)) from None

    holder = current_holder(purpose)
    try:
        # An atomic replace swaps a symbolic link at holder_path for a file instead of
        # writing through it to the link's target.
        write_atomic(holder_path, json.dumps(asdict(holder)) + "\n")
        yield holder
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


def _unusable_lock_message(deployment: str, lock_path: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    if lock_path.is_symlink():
        return (f"cannot lock deployment {deployment}: {lock_path} is a symbolic link "
                f"({reason}); delete the link and rerun")
    return (f"cannot lock deployment {deployment}: opening {lock_path} failed ({reason}); "
            "make its folder writable by this user and rerun")


def _read_holder_file(path: Path) -> LockHolder | None:
    try:
        return LockHolder.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


class LockStore(Protocol):
    """A key-value store with an atomic put-if-absent; ``modal.Dict`` has this shape."""

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...

    def get(self, key: Any, default: Any = None) -> Any: ...

    def pop(self, key: Any, default: Any = None) -> Any: ...


@contextmanager
def record_lock(
    store: LockStore, key: str, purpose: str, *, deployment: str,
    stale_after_s: float = STALE_AFTER_S,
) -> Iterator[LockHolder]:
    """Hold a lock entry ``key`` in ``store``; raise LockHeldError naming the holder.

    The entry is written with put-if-absent, so of two runs that race only one wins.
    An entry older than ``stale_after_s`` (a run that crashed) is removed and taken over.
    """
    holder = current_holder(purpose)
    document = asdict(holder)

    if not store.put(key, document, skip_if_exists=True):
        existing = LockHolder.from_dict(store.get(key))
        if existing is None or not _is_stale(existing, stale_after_s):
            raise LockHeldError(_held_message(deployment, existing, how_to_clear=(
                f"wait for that run to finish; an entry left by a crashed run expires "
                f"{stale_after_s / 3600:g} h after it was taken"
            )))
        store.pop(key, None)
        if not store.put(key, document, skip_if_exists=True):
            raise LockHeldError(_held_message(deployment, LockHolder.from_dict(store.get(key)),
                                              how_to_clear="wait for that run to finish"))

    try:
        yield holder
    finally:
        if LockHolder.from_dict(store.get(key)) == holder:
            store.pop(key, None)


def _is_stale(holder: LockHolder, stale_after_s: float) -> bool:
    try:
        since = datetime.datetime.fromisoformat(holder.since.replace("Z", "+00:00"))
    except ValueError:
        return True
    age = datetime.datetime.now(datetime.UTC) - since
    return age.total_seconds() > stale_after_s


def _held_message(deployment: str, holder: LockHolder | None, *, how_to_clear: str) -> str:
    who = holder.describe() if holder else "another run (holder unknown)"
    return f"deployment {deployment} is locked by {who}; {how_to_clear}"
