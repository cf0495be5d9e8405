"""The error taxonomy shared by the CLI, the loader, the targets and the runtime.

Every error that reaches the CLI is an ``IacError``; the CLI prints its message and
exits with its ``exit_code`` instead of showing a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class IacError(Exception):
    """Base class: an error the CLI reports in one or more lines, without a traceback."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One problem in a config file, located at FILE:LINE:COLUMN when the position is known."""

    message: str
    path: str = ""
    file: str = ""
    line: int | None = None
    column: int | None = None
    kind: str = "validation"

    def format(self) -> str:
        """Format as ``FILE:LINE:COLUMN: field.path: message``."""
        where = self.file or "<config>"
        if self.file == "--set" and self.line is not None:
            where = f"--set #{self.line}"
        elif self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field_part = f"{self.path}: " if self.path else ""
        return f"{where}: {field_part}{self.message}"


@dataclass
class ConfigError(IacError):
    """A config file that cannot be used; carries every problem found in one run."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(problem.format() for problem in self.problems)


class MissingExtraError(IacError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"the Python package {module!r} is missing; install it with: "
            f"pip install 'moondream-iac[{extra}]'"
        )


class TargetError(IacError):
    """A deploy target (Modal or local) failed: no token, no route, a failed deploy."""


class WeightsError(IacError):
    """The weights step failed: hub unreachable, hash mismatch, disk full."""


class LockHeldError(IacError):
    """Another apply holds the deployment lock."""
