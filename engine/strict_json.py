"""Strict JSON for untrusted input: valid UTF-8, finite numbers in range, bounded nesting and sizes.

Python's `json` accepts NaN, Infinity, `1e999` (parsed as infinity), 4,000-digit integers, lone
UTF-16 surrogates and nesting until the interpreter's recursion limit; each of those later breaks a
writer, a database or a response. Everything that crosses a boundary (HTTP bodies, workflow files,
embedded metadata) goes through `loads_strict` or `check_value` instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from engine.errors import DiffgraphError

# Seeds go up to 2**64 - 1; nothing legitimate needs more than 20 digits.
MAX_INT = 2**64 - 1
MIN_INT = -(2**63)
_MAX_INT_DIGITS = 20


class InputRejected(DiffgraphError):
    """Untrusted input that is not strict JSON or exceeds a size limit; says what is wrong and where."""

    code = "invalid_input"


@dataclass(frozen=True)
class JsonLimits:
    """Bounds for one JSON document: nesting depth, characters per string, values in total."""

    max_depth: int = 64
    max_string: int = 16 * 1024 * 1024
    max_values: int = 2_000_000


DEFAULT_LIMITS = JsonLimits()
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def _refuse_constant(name: str) -> Any:
    raise InputRejected(f"{name} is not a JSON number; use a finite number or null")


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > _MAX_INT_DIGITS:
        raise InputRejected(f"the integer {text[:24]}... has {len(digits)} digits; integers stop at 2**64")
    value = int(text)
    if not MIN_INT <= value <= MAX_INT:
        raise InputRejected(f"the integer {value} is outside -2**63 .. 2**64-1")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputRejected(f"the number {text[:40]} is too large to represent")
    return value


def decode_text(raw: bytes, what: str) -> str:
    """Bytes as UTF-8 text (a UTF-8 byte-order mark is tolerated); other encodings are refused."""
    if raw.startswith(_UTF16_32_BOMS) or (len(raw) >= 2 and (raw[0] == 0 or raw[1] == 0)):
        raise InputRejected(f"{what} is not UTF-8 (it looks like UTF-16 or UTF-32); save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputRejected(f"{what} is not valid UTF-8 (byte {exc.start}): save it as UTF-8") from exc


def loads_strict(raw: bytes | str, what: str = "the input", limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """Parse untrusted JSON; raises InputRejected (with `what` in the message) on anything unsafe."""
    text = decode_text(raw, what) if isinstance(raw, bytes | bytearray) else raw
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite_float
        )
    except InputRejected as exc:
        raise InputRejected(f"{what}: {exc.message}") from None
    except RecursionError:
        raise InputRejected(f"{what} is nested too deeply (limit {limits.max_depth} levels)") from None
    except json.JSONDecodeError as exc:
        raise InputRejected(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    check_value(value, what, limits)
    return value


def check_value(value: Any, what: str = "the input", limits: JsonLimits = DEFAULT_LIMITS) -> None:
    """Raise InputRejected unless value is plain JSON data within limits that survives a round trip."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > limits.max_values:
            raise InputRejected(f"{what} holds more than {limits.max_values} values")
        if isinstance(item, str):
            _check_string(item, what, limits)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                raise InputRejected(f"{what}: the integer {item} is outside -2**63 .. 2**64-1")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InputRejected(f"{what} holds {item}, which JSON cannot carry; use a finite number")
        elif isinstance(item, dict | list):
            if depth >= limits.max_depth:
                raise InputRejected(f"{what} is nested too deeply (limit {limits.max_depth} levels)")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        raise InputRejected(f"{what} has a non-text key {key!r}")
                    _check_string(key, what, limits)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            raise InputRejected(f"{what} holds a {type(item).__name__}, which is not JSON data")


def _check_string(text: str, what: str, limits: JsonLimits) -> None:
    if len(text) > limits.max_string:
        raise InputRejected(f"{what} holds a text of {len(text)} characters (limit {limits.max_string})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputRejected(
            f"{what} holds text with an unpaired UTF-16 surrogate (\\ud800-\\udfff)"
        ) from None
