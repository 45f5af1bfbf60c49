"""Strict JSON: what Python's json accepts but our boundary must refuse."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.strict_json import InputRejected, JsonLimits, check_value, loads_strict


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}',
        "[Infinity]",
        "-Infinity",
        "1e999",
        "9" * 4000,
        str(2**64),
        "[" * 5000 + "]" * 5000,
        '"\\ud800"',
        '{"\\udfff": 1}',
        "",
        "{",
    ],
)
def test_loads_strict_refuses(text):
    with pytest.raises(InputRejected):
        loads_strict(text)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [("{}".encode("utf-16"), "UTF-16"), (b'{"a": "\xff"}', "UTF-8"), (b"\x00{}", "UTF-16")],
)
def test_loads_strict_names_the_encoding_problem(raw, needle):
    with pytest.raises(InputRejected, match=needle):
        loads_strict(raw, "workflow.json")


def test_loads_strict_accepts_ordinary_json_and_a_utf8_bom():
    assert loads_strict(b'\xef\xbb\xbf{"seed": 18446744073709551615, "x": [1.5, "\xc3\xa9"]}') == {
        "seed": 2**64 - 1,
        "x": [1.5, "é"],
    }


def test_check_value_enforces_limits():
    with pytest.raises(InputRejected, match="nested"):
        check_value([[[[1]]]], limits=JsonLimits(max_depth=3))
    with pytest.raises(InputRejected, match="characters"):
        check_value({"t": "x" * 11}, limits=JsonLimits(max_string=10))
    with pytest.raises(InputRejected):
        check_value({"v": math.nan})
    with pytest.raises(InputRejected):
        check_value({"v": object()})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_loads_strict_only_ever_raises_input_rejected(raw):
    try:
        value = loads_strict(raw)
    except InputRejected:
        return
    check_value(value)
