"""The GPU catalog: Modal's GPU names, their memory and price, read from data/gpus.yaml."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml


@dataclass(frozen=True)
class GpuInfo:
    """One GPU type as Modal names it, with its memory and on-demand price."""

    name: str
    memory_gb: int
    price_per_hour: float | None
    price_source: str
    bfloat16: bool
    latency_ms: int | None = None


@dataclass(frozen=True)
class GpuCatalog:
    """All known GPU types, their aliases, and where the prices came from."""

    gpus: dict[str, GpuInfo]
    aliases: dict[str, str]
    as_of: str
    sources: dict[str, str]

    def canonical(self, name: str) -> str | None:
        """Return Modal's spelling of a GPU name (case-insensitive), or None if unknown."""
        upper = name.strip().upper()
        for known in self.gpus:
            if known.upper() == upper:
                return known
        for alias, target in self.aliases.items():
            if alias.upper() == upper:
                return target
        return None


def _parse_catalog(data: dict) -> GpuCatalog:
    gpus = {
        name: GpuInfo(name=name, **fields) for name, fields in (data.get("gpus") or {}).items()
    }
    return GpuCatalog(
        gpus=gpus,
        aliases=dict(data.get("aliases") or {}),
        as_of=str(data.get("as_of", "")),
        sources=dict(data.get("sources") or {}),
    )


# libyaml's loader reads the shipped table about 8x faster than the pure-Python one;
# both are safe loaders. User files go through config.yamlfile instead.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def default_catalog() -> GpuCatalog:
    """Load the catalog shipped with the package."""
    text = resources.files("moondream_iac").joinpath("data/gpus.yaml").read_text("utf-8")
    return _parse_catalog(yaml.load(text, Loader=_FAST_SAFE_LOADER))


def load_catalog(path: Path | None = None) -> GpuCatalog:
    """Load the shipped catalog, with prices overridden from ``path`` when given."""
    catalog = default_catalog()
    if path is None:
        return catalog

    override = yaml.safe_load(path.read_text("utf-8")) or {}
    merged = {name: vars(info).copy() for name, info in catalog.gpus.items()}
    for name, fields in (override.get("gpus") or {}).items():
        canonical = catalog.canonical(name) or name
        merged.setdefault(canonical, {"name": canonical, "memory_gb": 0, "bfloat16": True,
                                      "price_per_hour": None, "price_source": "user"})
        merged[canonical].update(fields)
        merged[canonical].setdefault("price_source", "user")
    for fields in merged.values():
        fields.pop("name", None)
    return _parse_catalog({
        "gpus": merged,
        "aliases": catalog.aliases,
        "as_of": override.get("as_of", catalog.as_of),
        "sources": {**catalog.sources, "user": f"prices from {path}"},
    })
