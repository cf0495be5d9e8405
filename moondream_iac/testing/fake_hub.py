"""A small Hugging Face hub on 127.0.0.1 for tests: repos from folders, tags, faults.

It serves the routes huggingface_hub 0.36.2 calls to resolve and download a snapshot:

    GET  /api/models/{repo}/revision/{rev}[?blobs=true]   model_info / repo_info
    GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive list_repo_tree
    HEAD /{repo}/resolve/{rev}/{path}                     get_hf_file_metadata
    GET  /{repo}/resolve/{rev}/{path}                     http_get, with Range resume

Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound), which
huggingface_hub maps to its exception classes. Point a client at it with
``HF_ENDPOINT=hub.url`` set before huggingface_hub is imported, or pass ``endpoint=``.

Knobs for fault tests: drop the connection part-way through a file, serve corrupted
bytes, require a token, slow every download, and count requests.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from moondream_iac.weights.hashing import git_blob_id

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx")
LFS_MIN_BYTES = 10 * 1024 * 1024
SEND_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FakeFile:
    """One file of a commit, with the digests the hub reports for it."""

    path: str
    content: bytes
    blob_id: str
    sha256: str
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class FakeCommit:
    """A commit: its sha and files by path."""

    sha: str
    files: dict[str, FakeFile]


@dataclass
class FakeRepo:
    """A repo: commits by sha, refs (tags and branches) to commit shas, an optional token."""

    repo_id: str
    commits: dict[str, FakeCommit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    token: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One request the hub received. ``authorized`` is whether a bearer token came with it."""

    method: str
    path: str
    range: str | None
    authorized: bool


class FakeHub:
    """The hub server. Use as a context manager, or call start() and stop()."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[RequestRecord] = []
        self.bytes_per_second: float | None = None
        self._drops: dict[tuple[str, str], list[int]] = {}
        self._corruptions: dict[tuple[str, str], int] = {}
        self._guard = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Content

    def add_revision(self, repo_id: str, tag: str, folder: Path, *, branch: str = "main") -> str:
        """Publish the files of ``folder`` as a new commit of ``repo_id`` tagged ``tag``.

        The branch ``branch`` moves to the new commit. Returns the commit sha.
        """
        contents = {}
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                contents[path.relative_to(folder).as_posix()] = path.read_bytes()
        return self.add_files(repo_id, tag, contents, branch=branch)

    def add_files(self, repo_id: str, tag: str, contents: dict[str, bytes], *, branch: str = "main") -> str:
        """Publish ``contents`` (file name to bytes) as a new commit of ``repo_id`` tagged ``tag``.

        The names are listed as given, so a test can publish names that no folder can
        hold, such as ``../victim.txt`` or ``/tmp/victim.txt``. Returns the commit sha.
        """
        files = {name: _make_file(name, content) for name, content in contents.items()}
        listing = "\n".join(f"{name} {item.blob_id}" for name, item in files.items())
        sha = hashlib.sha1(f"{repo_id}\n{tag}\n{listing}".encode(), usedforsecurity=False).hexdigest()

        repo = self.repos.setdefault(repo_id, FakeRepo(repo_id))
        repo.commits[sha] = FakeCommit(sha=sha, files=files)
        repo.refs[tag] = sha
        repo.refs[branch] = sha
        return sha

    def require_token(self, repo_id: str, token: str) -> None:
        """Respond with 401 RepoNotFound for ``repo_id`` unless a request carries ``Bearer <token>``."""
        self.repos[repo_id].token = token

    # Faults and counters

    def drop_connection(self, repo_id: str, path: str, *, after_bytes: int, times: int = 1) -> None:
        """Close the connection after ``after_bytes`` of the body, for the next ``times`` GETs of the file."""
        with self._guard:
            self._drops[(repo_id, path)] = [after_bytes, times]

    def corrupt(self, repo_id: str, path: str, *, times: int = 1) -> None:
        """Serve the file with its first byte flipped for the next ``times`` GETs."""
        with self._guard:
            self._corruptions[(repo_id, path)] = times

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Return how many requests matched ``method`` (any when None) and a path substring."""
        with self._guard:
            return sum(
                1 for record in self.requests
                if (method is None or record.method == method) and contains in record.path
            )

    def file_downloads(self) -> int:
        """Return how many GET requests fetched file content."""
        return self.count("GET", "/resolve/")

    def reset_counts(self) -> None:
        with self._guard:
            self.requests.clear()

    # Server

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake hub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Used by the handler

    def _record(self, record: RequestRecord) -> None:
        with self._guard:
            self.requests.append(record)

    def _take_drop(self, repo_id: str, path: str) -> int | None:
        with self._guard:
            entry = self._drops.get((repo_id, path))
            if not entry or entry[1] <= 0:
                return None
            entry[1] -= 1
            return entry[0]

    def _take_corruption(self, repo_id: str, path: str) -> bool:
        with self._guard:
            remaining = self._corruptions.get((repo_id, path), 0)
            if remaining <= 0:
                return False
            self._corruptions[(repo_id, path)] = remaining - 1
            return True


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - name fixed by the base class
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # Routing

    def _dispatch(self, *, head: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        self.hub._record(RequestRecord(
            method=self.command, path=path, range=self.headers.get("Range"),
            authorized=self.headers.get("Authorization", "").startswith("Bearer "),
        ))

        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(?:/(.*))?", path)
        if api and not head:
            repo_id, kind, revision, subpath = api.groups()
            commit = self._commit(repo_id, revision)
            if commit is None:
                return
            if kind == "revision":
                self._send_json(_model_info(repo_id, commit, blobs=_truthy(query.get("blobs"))))
            else:
                self._send_json(_tree(commit, subpath or ""))
            return

        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve:
            repo_id, revision, name = resolve.groups()
            commit = self._commit(repo_id, revision)
            if commit is None:
                return
            item = commit.files.get(name)
            if item is None:
                self._send_error(404, "EntryNotFound", f"{name} not found in {repo_id}@{revision}")
                return
            self._send_file(repo_id, commit, item, head=head)
            return

        self._send_error(404, "RepoNotFound", f"no route for {path}")

    def _commit(self, repo_id: str, revision: str) -> FakeCommit | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._send_error(404, "RepoNotFound", f"repository {repo_id} not found")
            return None
        if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._send_error(401, "RepoNotFound", f"repository {repo_id} needs a token")
            return None
        sha = repo.refs.get(revision, revision)
        commit = repo.commits.get(sha)
        if commit is None:
            self._send_error(404, "RevisionNotFound", f"revision {revision} not found in {repo_id}")
        return commit

    # Responses

    def _send_file(self, repo_id: str, commit: FakeCommit, item: FakeFile, *, head: bool) -> None:
        content = item.content
        start, end = 0, len(content) - 1
        status = 200
        requested = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", requested or "")
        if match and not head:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else end
            if start > len(content) - 1 and len(content) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(content)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206

        body = content[start:end + 1]
        if not head and self.hub._take_corruption(repo_id, item.path) and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]

        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{item.etag}"')
        self.send_header("X-Repo-Commit", commit.sha)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(content)}")
        self.end_headers()
        if head:
            return

        drop_after = self.hub._take_drop(repo_id, item.path)
        if drop_after is not None:
            self._write_slowly(body[:drop_after])
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._write_slowly(body)

    def _write_slowly(self, body: bytes) -> None:
        rate = self.hub.bytes_per_second
        for offset in range(0, len(body), SEND_CHUNK_BYTES):
            chunk = body[offset:offset + SEND_CHUNK_BYTES]
            self.wfile.write(chunk)
            if rate:
                self.wfile.flush()
                time.sleep(len(chunk) / rate)
        self.wfile.flush()

    def _send_json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _make_file(name: str, content: bytes) -> FakeFile:
    return FakeFile(
        path=name,
        content=content,
        blob_id=git_blob_id(content),
        sha256=hashlib.sha256(content).hexdigest(),
        lfs=name.endswith(LFS_SUFFIXES) or len(content) >= LFS_MIN_BYTES,
    )


def _model_info(repo_id: str, commit: FakeCommit, *, blobs: bool) -> dict:
    siblings = []
    for item in commit.files.values():
        sibling: dict = {"rfilename": item.path}
        if blobs:
            sibling["size"] = item.size
            sibling["blobId"] = item.blob_id
            if item.lfs:
                sibling["lfs"] = {"sha256": item.sha256, "size": item.size, "pointerSize": 134}
        siblings.append(sibling)
    return {
        "_id": commit.sha[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/")[0],
        "sha": commit.sha,
        "private": False,
        "disabled": False,
        "gated": False,
        "tags": [],
        "siblings": siblings,
    }


def _tree(commit: FakeCommit, subpath: str) -> list[dict]:
    prefix = f"{subpath.rstrip('/')}/" if subpath else ""
    entries: list[dict] = []
    folders: set[str] = set()
    for item in commit.files.values():
        if not item.path.startswith(prefix):
            continue
        parent = item.path.rsplit("/", 1)[0] if "/" in item.path else ""
        while parent and parent + "/" != prefix and parent not in folders:
            folders.add(parent)
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        entry: dict = {"type": "file", "oid": item.blob_id, "size": item.size, "path": item.path}
        if item.lfs:
            entry["lfs"] = {"oid": item.sha256, "size": item.size, "pointerSize": 134}
        entries.append(entry)
    entries.extend({"type": "directory", "oid": "0" * 40, "size": 0, "path": folder}
                   for folder in sorted(folders))
    return entries


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[0].lower() in ("1", "true", "yes")


# Fixtures: Moondream-shaped repos for the weights tests.

MOONDREAM_REPO = "vikhyatk/moondream2"
STARMIE_REPO = "moondream/starmie-v1"


def write_tokenizer(folder: Path, words: tuple[str, ...]) -> Path:
    """Write a word-level ``tokenizer.json`` that ``tokenizers.Tokenizer`` loads, and return it."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocabulary = {"[UNK]": 0, **{word: index + 1 for index, word in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def publish_moondream(hub: FakeHub, workdir: Path, *, filler_bytes: int = 12 * 1024 * 1024) -> dict[str, str]:
    """Publish tiny stand-ins of three ``vikhyatk/moondream2`` tags and their tokenizer repos.

    - 2025-04-14: tiny model variant 1 (tokenizer from vikhyatk/moondream2@2024-08-26)
    - 2025-06-21: tiny model variant 2 (tokenizer from moondream/starmie-v1@2025-06-21)
    - 2025-03-27: tiny model variant 3 plus ``filler.safetensors`` of ``filler_bytes``
      random bytes, large enough to span huggingface_hub's 10 MiB download chunks

    Returns the commit sha of each published tag, keyed ``repo@tag``.
    """
    import random

    from moondream_iac.testing.tiny_model import write_tiny_model

    shas = {}
    old_tokenizer = workdir / "moondream2-2024-08-26"
    write_tokenizer(old_tokenizer, ("a", "screen", "old"))
    shas[f"{MOONDREAM_REPO}@2024-08-26"] = hub.add_revision(MOONDREAM_REPO, "2024-08-26", old_tokenizer)

    starmie = workdir / "starmie-2025-06-21"
    write_tokenizer(starmie, ("a", "screen", "button"))
    shas[f"{STARMIE_REPO}@2025-06-21"] = hub.add_revision(STARMIE_REPO, "2025-06-21", starmie)

    for tag, variant in (("2025-04-14", 1), ("2025-06-21", 2), ("2025-03-27", 3)):
        folder = write_tiny_model(workdir / f"moondream2-{tag}", variant=variant)
        if tag == "2025-03-27":
            filler = random.Random(tag).randbytes(filler_bytes)
            (folder / "filler.safetensors").write_bytes(filler)
        shas[f"{MOONDREAM_REPO}@{tag}"] = hub.add_revision(MOONDREAM_REPO, tag, folder)
    return shas
