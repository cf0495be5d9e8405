"""File digests: sha256 for every file, and the git blob id the hub gives for non-LFS files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    """The size and digests of one file on disk."""

    size: int
    sha256: str
    git_blob_sha1: str | None


def digest_file(path: Path, *, git_blob: bool = False) -> FileDigest:
    """Hash ``path`` in one read: sha256, plus the git blob sha1 when ``git_blob`` is set.

    The git blob id is sha1 over ``b"blob <size>\\0"`` followed by the content, which is
    what the hub reports as ``blobId``/``oid`` for files not stored in LFS.
    """
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = None
    if git_blob:
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha1.update(b"blob %d\0" % size)

    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    read_total = 0
    with path.open("rb", buffering=0) as stream:
        while True:
            count = stream.readinto(buffer)
            if not count:
                break
            sha256.update(view[:count])
            if sha1 is not None:
                sha1.update(view[:count])
            read_total += count

    return FileDigest(
        size=read_total,
        sha256=sha256.hexdigest(),
        git_blob_sha1=sha1.hexdigest() if sha1 is not None else None,
    )


def git_blob_id(content: bytes) -> str:
    """Return the git blob sha1 of ``content``."""
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha1.update(b"blob %d\0" % len(content))
    sha1.update(content)
    return sha1.hexdigest()
