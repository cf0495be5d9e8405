"""Turn plain data into Python source literals for the rendered app file.

Every value that comes from deploy.yaml reaches the rendered file through
``python_literal``, so a value can only ever become a constant in that file: quotes,
newlines, braces or Jinja markup inside a string stay inside the string literal.
"""

from __future__ import annotations

import math
from typing import Any

from moondream_iac.errors import IacError


class LiteralError(IacError, TypeError):
    """A value that has no safe Python literal form (an object, NaN, a str subclass...)."""


def python_literal(value: Any) -> str:
    """Return Python source that evaluates to ``value``.

    Accepts None, bool, int, finite float, str and list, tuple and dict of those,
    recursively. Raises LiteralError for anything else, naming the offending type.
    """
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return repr(value)
    if kind is float:
        return _float_literal(value)
    if kind is str:
        # repr() quotes and escapes: it escapes quotes, backslashes, control characters
        # and every non-printable code point, and keeps printable non-ASCII text as is.
        return repr(value)
    if kind is list:
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if kind is tuple:
        return _tuple_literal(value)
    if kind is dict:
        return _dict_literal(value)
    raise LiteralError(
        f"cannot write a value of type {kind.__name__} into the app file: only None, bool, "
        "int, float, str and list, tuple or dict of them have a literal form"
    )


def _float_literal(value: float) -> str:
    if not math.isfinite(value):
        raise LiteralError(f"cannot write the float {value!r} into the app file: it has no literal form")
    return repr(value)


def _tuple_literal(value: tuple) -> str:
    items = [python_literal(item) for item in value]
    if len(items) == 1:
        return f"({items[0]},)"
    return "(" + ", ".join(items) + ")"


def _dict_literal(value: dict) -> str:
    pairs = [f"{python_literal(key)}: {python_literal(item)}" for key, item in value.items()]
    return "{" + ", ".join(pairs) + "}"
