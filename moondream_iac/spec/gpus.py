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
    """Load the shipped catalog, with prices overridden from ``path`` when given.

    The override file has the shape of data/gpus.yaml; each GPU it lists may set
    ``price_per_hour`` (US dollars per GPU-hour), and a price set there is labelled as
    the user's. Raise ConfigError when the file cannot be read or has the wrong shape.
    """
    catalog = default_catalog()
    if path is None:
        return catalog

    override, as_of = _read_override(path)
    merged = {name: vars(info).copy() for name, info in catalog.gpus.items()}
    for name, fields in override.items():
        canonical = catalog.canonical(name) or name
        entry = merged.setdefault(canonical, {"memory_gb": 0, "bfloat16": True,
                                              "price_per_hour": None, "price_source": "user"})
        entry["price_per_hour"] = fields["price_per_hour"]
        entry["price_source"] = "user"
    for fields in merged.values():
        fields.pop("name", None)
    return _parse_catalog({
        "gpus": merged,
        "aliases": catalog.aliases,
        "as_of": as_of or catalog.as_of,
        "sources": {**catalog.sources, "user": f"prices from {path}"},
    })


def _read_override(path: Path) -> tuple[dict[str, dict[str, float | None]], str | None]:
    """Read a prices file into {GPU name: {"price_per_hour": dollars or None}} and its as_of."""
    from moondream_iac.errors import ConfigError, Problem

    def invalid(message: str) -> ConfigError:
        return ConfigError([Problem(message, file=str(path), kind="parse")])

    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
    except (OSError, UnicodeDecodeError) as error:
        raise invalid(f"cannot read the prices file: {error}") from None
    except yaml.YAMLError as error:
        raise invalid(f"invalid YAML in the prices file: {error}") from None

    gpus = data.get("gpus") if isinstance(data, dict) else None
    if not isinstance(gpus, dict):
        raise invalid("expected a mapping `gpus: {NAME: {price_per_hour: DOLLARS}}`, as in "
                      "moondream_iac/data/gpus.yaml")
    result = {}
    for name, fields in gpus.items():
        price = fields.get("price_per_hour") if isinstance(fields, dict) else None
        valid = price is None or (isinstance(price, (int, float)) and not isinstance(price, bool)
                                  and price >= 0)
        if not isinstance(fields, dict) or "price_per_hour" not in fields or not valid:
            raise invalid(f"gpus.{name}: expected price_per_hour: a number of US dollars "
                          f"per GPU-hour, at least 0 (got {fields!r})")
        result[str(name)] = {"price_per_hour": None if price is None else float(price)}
    as_of = data.get("as_of")
    return result, None if as_of is None else str(as_of)
