"""Read a YAML file into plain data plus the FILE:LINE:COLUMN of every value.

Safe YAML only (PyYAML's SafeLoader resolves the scalars). On top of it this module
rejects what a plain ``yaml.safe_load`` silently accepts: duplicate keys, non-string
keys, merge keys, and the YAML 1.1 readings that turn ``0755`` into 493, ``1:30`` into
90 or ``on`` into true.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from moondream_iac.errors import ConfigError, Problem

# A config file larger than this is not a deploy.yaml; reading it would only waste memory.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32
# Keys longer than this are shortened in messages.
MAX_SHOWN_KEY = 64
# Values read from one file, aliases counted each time they are used: a deploy file has
# about a hundred, and a YAML alias bomb (each level repeating the one before) has billions.
MAX_VALUES = 10_000
# Tags a deploy file may carry, implicit or explicit; any other tag (!!python/object,
# !custom, !!binary, !!set) is rejected instead of being constructed or ignored.
_ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
)

FieldPath = tuple[str | int, ...]

# YAML 1.1 plain scalars that PyYAML turns into something other than the text written.
_OCTAL_LIKE = re.compile(r"^[-+]?0[0-9_]+$")
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_BOOLEAN_WORDS = frozenset({"yes", "no", "on", "off", "y", "n"})


@dataclass(frozen=True)
class Location:
    """The place a value was written: file, 1-based line and column, and the text as written."""

    file: str
    line: int
    column: int
    text: str | None = None
    plain: bool = False

    def format(self) -> str:
        if self.file == "--set":
            return f"--set #{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class YamlDocument:
    """Plain data read from one YAML file, with the location of every value and key."""

    data: Any
    file: str
    locations: dict[FieldPath, Location] = field(default_factory=dict)
    # Problems that left the structure readable (duplicate keys, YAML 1.1 number traps);
    # the loader reports them together with the schema's findings.
    problems: list[Problem] = field(default_factory=list)

    def locate(self, path: FieldPath) -> Location | None:
        """Return the location of ``path``, or of its nearest written parent."""
        for end in range(len(path), -1, -1):
            location = self.locations.get(tuple(path[:end]))
            if location is not None:
                return location
        return None


def read_yaml_file(path: Path, *, display_name: str | None = None) -> YamlDocument:
    """Read ``path`` as one YAML mapping; raise ConfigError listing every problem found."""
    name = display_name or str(path)
    raw = _read_bytes(path, name)
    text = _decode(raw, name)
    return parse_yaml_text(text, name)


def parse_yaml_text(text: str, name: str) -> YamlDocument:
    """Parse YAML text that must hold one mapping; raise ConfigError if it cannot be read."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_syntax_problem(error, name)]) from None
    except yaml.reader.ReaderError as error:
        raise ConfigError([_character_problem(error, text, name)]) from None
    except yaml.YAMLError as error:
        message = " ".join(str(error).split())
        raise ConfigError([Problem(f"invalid YAML: {message}", file=name, kind="parse")]) from None
    except RecursionError:
        raise ConfigError([Problem(
            f"the YAML is nested too deeply to read; a deploy file needs at most "
            f"{MAX_DEPTH} levels", file=name, kind="parse",
        )]) from None

    if node is None:
        raise ConfigError([Problem(
            "the file is empty; start from the deploy.yaml in the moondream_iac repository "
            "or run: python -m moondream_iac schema",
            file=name, line=1, column=1, kind="parse",
        )])
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise ConfigError([Problem(
            f"the top level must be a mapping of settings (got {kind}); write key: value lines",
            file=name, line=node.start_mark.line + 1, column=node.start_mark.column + 1,
            kind="parse",
        )])

    reader = _NodeReader(name)
    try:
        data = reader.read(node, ())
    except _TooManyValues:
        raise ConfigError([Problem(
            f"the file holds more than {MAX_VALUES} values once YAML aliases (*name) are "
            "expanded; write the settings out instead of repeating aliases",
            file=name, kind="parse",
        )]) from None
    return YamlDocument(data=data, file=name, locations=reader.locations,
                        problems=reader.problems)


def parse_yaml_value(text: str, path: FieldPath, where: Location) -> tuple[Any, list[Problem]]:
    """Read one command-line value as YAML, with the same trap checks as a file.

    Text that is not valid YAML is kept as a string; problems are located at ``where``.
    """
    if not text.strip():
        return "", []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text, []
    if node is None:
        return None, []

    reader = _NodeReader(where.file)
    value = reader.read(node, path)
    problems = [replace(problem, line=where.line, column=where.column)
                for problem in reader.problems]
    return value, problems


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError([Problem(
                f"the file is {size} bytes, larger than the {MAX_FILE_BYTES}-byte limit for a "
                "config file; check that -f names the right file",
                file=name, kind="parse",
            )])
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(
            "file not found; pass the config with -f PATH (default: deploy.yaml in the "
            "current folder)", file=name, kind="parse",
        )]) from None
    except IsADirectoryError:
        raise ConfigError([Problem("is a folder, not a file; pass a YAML file with -f PATH",
                                   file=name, kind="parse")]) from None
    except PermissionError:
        raise ConfigError([Problem("permission denied; check the file's permissions",
                                   file=name, kind="parse")]) from None


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError([Problem(
            f"the file is not valid UTF-8 (byte 0x{raw[error.start]:02x}); save it as UTF-8",
            file=name, line=line, column=column, kind="parse",
        )]) from None
    if "\x00" in text:
        raise ConfigError([Problem("the file contains NUL bytes; is it a binary file?",
                                   file=name, kind="parse")])
    return text


def _character_problem(error: yaml.reader.ReaderError, text: str, name: str) -> Problem:
    """Locate a character that YAML does not allow in a file (a control character)."""
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    code = error.character if isinstance(error.character, int) else ord(error.character)
    return Problem(f"the character U+{code:04X} is not allowed in YAML; remove it, or write "
                   "it as an escape such as \\u0007 inside double quotes",
                   file=name, line=line, column=column, kind="parse")


def _syntax_problem(error: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    what = error.problem or "invalid YAML"
    if error.context:
        what = f"{error.context}, {what}"
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    return Problem(f"invalid YAML syntax: {what}", file=name, line=line, column=column,
                   kind="parse")


class _TooManyValues(Exception):
    """Raised by _NodeReader once it has read MAX_VALUES values."""


class _NodeReader:
    """Turn a composed node tree into plain data, collecting every problem on the way."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.locations: dict[FieldPath, Location] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._values_read = 0

    def read(self, node: yaml.Node, path: FieldPath) -> Any:
        self._values_read += 1
        if self._values_read > MAX_VALUES:
            raise _TooManyValues()

        self._remember(node, path)
        if len(path) > MAX_DEPTH:
            self._problem(node, path, f"nesting deeper than {MAX_DEPTH} levels; no field of "
                          "a deploy file nests that deep, so flatten the value")
            return None
        if node.tag not in _ALLOWED_TAGS:
            self._problem(node, path, f"the YAML tag {_short_tag(node.tag)} is not supported; "
                          "remove it and write a plain value")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._read_mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*path, index)) for index, item in enumerate(node.value)]
        return self._read_scalar(node, path)

    def _read_mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._problem(key_node, path, "YAML merge keys (<<) are not supported; "
                              "write the settings out in full")
                continue
            key = self._read_key(key_node, path)
            if key is None:
                continue
            if key in first_seen:
                earlier = first_seen[key].start_mark.line + 1
                self._problem(key_node, (*path, key),
                              f"duplicate key {short_repr(key)} (first written on line "
                              f"{earlier}); keep only one")
                continue
            first_seen[key] = key_node
            result[key] = self.read(value_node, (*path, key))
            # Point at the key, where a reader looks for the setting, not at its value.
            value_location = self.locations[(*path, key)]
            self.locations[(*path, key)] = Location(
                self.name, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                value_location.text, value_location.plain,
            )
        return result

    def _read_key(self, node: yaml.Node, path: FieldPath) -> str | None:
        """Return a mapping key as text, or None after recording why it is not text."""
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            return node.value
        text = shown_key(node.value) if isinstance(node, yaml.ScalarNode) else "a collection"
        self._problem(node, path, f"keys must be text (got {text}); quote the key")
        return None

    def _read_scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError):
            self._problem(node, path, f"{node.value!r} cannot be read as "
                          f"{_short_tag(node.tag)}; remove the tag or fix the value")
            return None
        if node.style is not None:
            return value
        text = node.value
        if isinstance(value, int) and not isinstance(value, bool) and (
            _OCTAL_LIKE.match(text) and text.strip("+-0_")
        ):
            self._problem(node, path,
                          f"{text} has a leading zero, which YAML 1.1 reads as the octal "
                          f"number {value}; write it without the leading zero, or in quotes "
                          "if it is text")
        elif isinstance(value, (int, float)) and _SEXAGESIMAL.match(text):
            self._problem(node, path,
                          f"{text} is read by YAML 1.1 as the base-60 number {value}; "
                          f"write it in quotes (\"{text}\") if it is text")
        return value

    def _remember(self, node: yaml.Node, path: FieldPath) -> None:
        plain = isinstance(node, yaml.ScalarNode) and node.style is None
        text = node.value if isinstance(node, yaml.ScalarNode) else None
        self.locations[path] = Location(self.name, node.start_mark.line + 1,
                                        node.start_mark.column + 1, text, plain)

    def _problem(self, node: yaml.Node, path: FieldPath, message: str) -> None:
        self.problems.append(Problem(
            message, path=format_path(path), file=self.name,
            line=node.start_mark.line + 1, column=node.start_mark.column + 1, kind="parse",
        ))


def _short_tag(tag: str) -> str:
    """Write ``tag:yaml.org,2002:int`` as ``!!int``, the form used in YAML files."""
    return tag.replace("tag:yaml.org,2002:", "!!", 1)


def format_path(path: FieldPath) -> str:
    """Format a field path as ``gpu.fallbacks[1]``; odd keys are quoted and shortened."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = shown_key(part)
        text += f".{key}" if text else key
    return text


def shown_key(key: str) -> str:
    """Return a key as written when it is short and printable, else its short repr."""
    plain = key and key.isprintable() and len(key) <= MAX_SHOWN_KEY
    return key if plain else short_repr(key)


def short_repr(value: object, limit: int = 80) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters, for messages.

    repr escapes newlines and other control characters, so a hostile key or value
    cannot start a new line in the output and pass for a message of its own.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_boolean_word(location: Location | None) -> bool:
    """Tell whether a plain scalar is a YAML 1.1 yes/no/on/off word that became a bool."""
    return bool(location and location.plain and location.text
                and location.text.lower() in _BOOLEAN_WORDS)
