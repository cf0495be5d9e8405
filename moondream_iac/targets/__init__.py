"""Deploy targets: Modal, and the local machine. Both follow targets.base.Target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moondream_iac.config.loader import LoadedConfig
    from moondream_iac.targets.base import Target

TargetFactory = Callable[..., "Target"]

# Extra targets by name, added with register_target (used by tests to add a stand-in).
_REGISTERED: dict[str, TargetFactory] = {}


def register_target(name: str, factory: TargetFactory) -> None:
    """Make ``get_target`` build ``factory(loaded, build_dir=...)`` for spec.target ``name``."""
    _REGISTERED[name] = factory


def get_target(loaded: LoadedConfig, *, build_dir: Path = Path("build")) -> Target:
    """Return the target that ``loaded.spec.target`` names; modules load lazily.

    ``build_dir`` is where the Modal target renders the app file before a deploy.
    """
    name = loaded.spec.target
    if name in _REGISTERED:
        return _REGISTERED[name](loaded, build_dir=build_dir)
    if name == "local":
        from moondream_iac.targets.local import LocalTarget

        return LocalTarget(loaded)
    if name == "modal":
        from moondream_iac.targets.modal import ModalTarget

        return ModalTarget(loaded, build_dir=build_dir)
    raise ValueError(f"unknown target {name!r}; expected modal or local")


def target_names() -> list[str]:
    """Return every target name get_target accepts."""
    return sorted({"local", "modal", *_REGISTERED})


def describe(target: Any) -> str:
    """Return the target's name for messages."""
    return str(getattr(target, "name", type(target).__name__))
