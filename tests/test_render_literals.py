"""The quoting filter: every accepted value round-trips through ast.literal_eval."""

from __future__ import annotations

import ast
import enum
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moondream_iac.render.literals import LiteralError, python_literal

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.text(),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(values)
def test_literal_round_trips(value):
    source = python_literal(value)
    assert ast.literal_eval(source) == value
    assert type(ast.literal_eval(source)) is type(value)


def test_one_tuple_keeps_comma():
    assert python_literal(("a",)) == "('a',)"


def test_bool_is_not_int():
    assert python_literal(True) == "True"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_rejected(value):
    with pytest.raises(LiteralError, match="float"):
        python_literal(value)


class Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize("value", [Path("/x"), Colour.RED, object(), {1, 2}, b"bytes", ["ok", object()]])
def test_other_types_rejected(value):
    with pytest.raises(LiteralError, match="cannot write"):
        python_literal(value)
