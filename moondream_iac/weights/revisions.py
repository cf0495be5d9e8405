"""The table of known model revisions, read from data/revisions.yaml.

Pure and light: the schema imports this module, so it uses only PyYAML and the
standard library.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from importlib import resources

import yaml

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class RevisionInfo:
    """One known revision of a model repo and what its model code needs at load time."""

    repo: str
    revision: str
    api: str
    supported: bool
    tokenizer_repo: str
    tokenizer_revision: str
    tokenizer_files: tuple[str, ...]
    transformers: str | None
    pip: tuple[str, ...]
    apt: tuple[str, ...]
    reason: str = ""
    note: str = ""
    sha: str | None = None

    @property
    def tokenizer_in_model_repo(self) -> bool:
        """Whether the tokenizer files come from the model snapshot itself."""
        return self.tokenizer_repo == self.repo and self.tokenizer_revision == self.revision


def is_commit_sha(value: str) -> bool:
    """Return whether ``value`` is a full 40-character lowercase hex git commit sha."""
    return bool(_COMMIT_SHA.fullmatch(value))


def known_repos() -> tuple[str, ...]:
    """Return the model repos that the table lists, in table order."""
    return tuple(_load_table())


def known_revisions(repo: str) -> dict[str, RevisionInfo]:
    """Return the known revisions of ``repo`` by tag, oldest first; empty for an unlisted repo."""
    return dict(_load_table().get(repo, {}))


def lookup_revision(repo: str, revision: str) -> RevisionInfo | None:
    """Return the table entry for a tag of ``repo``, or for a commit sha the table records.

    Returns None for an unknown tag, an unlisted repo, and a commit sha that no entry
    records. The caller decides whether a bare sha is acceptable.
    """
    revisions = _load_table().get(repo, {})
    if revision in revisions:
        return revisions[revision]

    for info in revisions.values():
        if info.sha is not None and info.sha == revision:
            return info
    return None


def latest_supported(repo: str) -> RevisionInfo | None:
    """Return the newest supported revision of ``repo``, or None for an unlisted repo."""
    supported = [info for info in known_revisions(repo).values() if info.supported]
    return supported[-1] if supported else None


def info_for_commit(repo: str, sha: str) -> RevisionInfo | None:
    """Return load-time requirements for a commit sha that the table does not list.

    A bare sha gets the requirements of the newest supported tag, on the assumption that
    it is a commit of the same model code. Returns None for an unlisted repo.
    """
    recorded = lookup_revision(repo, sha)
    if recorded is not None:
        return recorded

    latest = latest_supported(repo)
    if latest is None:
        return None
    note = (
        f"commit {sha} is not in the revision table; assuming it needs what "
        f"{latest.revision} needs"
    )
    return replace(latest, revision=sha, sha=sha, note=note)


def format_known(repo: str) -> str:
    """Return the known tags of ``repo`` as one comma-separated string, for error messages."""
    return ", ".join(known_revisions(repo))


@functools.cache
def _load_table() -> dict[str, dict[str, RevisionInfo]]:
    text = resources.files("moondream_iac").joinpath("data/revisions.yaml").read_text("utf-8")
    data = yaml.safe_load(text) or {}

    table: dict[str, dict[str, RevisionInfo]] = {}
    for repo, entry in (data.get("repos") or {}).items():
        revisions = entry.get("revisions") or {}
        table[repo] = {
            str(tag): _parse_revision(repo, str(tag), fields) for tag, fields in revisions.items()
        }
    return table


def _parse_revision(repo: str, tag: str, fields: dict) -> RevisionInfo:
    tokenizer = fields.get("tokenizer") or {}
    return RevisionInfo(
        repo=repo,
        revision=tag,
        api=str(fields["api"]),
        supported=bool(fields["supported"]),
        tokenizer_repo=str(tokenizer.get("repo", repo)),
        tokenizer_revision=str(tokenizer.get("revision", tag)),
        tokenizer_files=tuple(tokenizer.get("files") or ("tokenizer.json",)),
        transformers=fields.get("transformers"),
        pip=tuple(fields.get("pip") or ()),
        apt=tuple(fields.get("apt") or ()),
        reason=" ".join(str(fields.get("reason") or "").split()),
        note=" ".join(str(fields.get("note") or "").split()),
        sha=fields.get("sha"),
    )


DEFAULT_MODEL_REPO = "vikhyatk/moondream2"


def revision_requirements(repo: str, revision: str) -> RevisionInfo:
    """Return the load-time requirements of a revision, for the image's packages and the runtime's version check.

    A commit sha the table does not record, a moving branch (allowed by the spec) and a
    repo the table does not list all get the requirements of the newest supported
    revision. That revision comes from the same repo when the table lists it, else from
    vikhyatk/moondream2.
    """
    info = lookup_revision(repo, revision)
    if info is None and is_commit_sha(revision):
        info = info_for_commit(repo, revision)
    if info is None:
        info = latest_supported(repo) or latest_supported(DEFAULT_MODEL_REPO)
    if info is None:
        raise LookupError(f"the revision table lists no supported revision of {DEFAULT_MODEL_REPO}")
    return info
