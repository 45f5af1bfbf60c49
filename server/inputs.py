"""The server's input layer: request bodies and query parameters parsed strictly, with ComfyUI-shaped 400s.

Every route reads JSON through `read_json` and numbers through `query_int`, so NaN, Infinity, huge
integers, deep nesting, invalid UTF-8 and oversized values are refused at the door with a message
instead of reaching the store or a node.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from engine.strict_json import DEFAULT_LIMITS, InputRejected, JsonLimits, loads_strict

__all__ = ["InputRejected", "oversized_texts", "query_int", "query_text", "read_json"]
# Longest query parameter value accepted (file names are further bounded by the path resolver).
MAX_QUERY_TEXT = 4096


async def read_json(
    request: Request, what: str = "the request body", limits: JsonLimits = DEFAULT_LIMITS, empty: Any = None
) -> Any:
    """The body as strict JSON; `empty` (when not None) stands for an empty body."""
    raw = await request.body()
    if empty is not None and not raw.strip():
        return empty
    return loads_strict(raw, what, limits)


def query_int(request: Request, name: str, *, low: int = 0, high: int = 2**31 - 1) -> int | None:
    """An integer query parameter within [low, high], or None when absent or empty."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    text = value.strip()
    digits = text.removeprefix("-")
    # isdigit() alone also accepts superscripts and other digits int() refuses ("²").
    if not (digits.isascii() and digits.isdigit() and len(text) <= 12):
        raise InputRejected(f"{name} must be an integer, not {value[:40]!r}")
    number = int(text)
    if not low <= number <= high:
        raise InputRejected(f"{name} must be between {low} and {high}, not {number}")
    return number


def query_text(request: Request, name: str, default: str = "", max_length: int = MAX_QUERY_TEXT) -> str:
    """A text query parameter of bounded length."""
    value = request.query_params.get(name, default)
    if len(value) > max_length:
        raise InputRejected(f"{name} is {len(value)} characters long (limit {max_length})")
    return value


def oversized_texts(prompt: Any, limit: int) -> dict[str, Any]:
    """ComfyUI-shaped node_errors for every text input longer than `limit` characters."""
    errors: dict[str, Any] = {}
    if not isinstance(prompt, dict):
        return errors
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        found = [
            {
                "type": "value_too_long",
                "message": f"{name} is {len(value)} characters long; the limit is {limit}",
                "details": f"{name}: shorten the text or raise the server's --max-text-length",
                "extra_info": {"input_name": name, "length": len(value), "limit": limit},
            }
            for name, value in inputs.items()
            if isinstance(value, str) and len(value) > limit
        ]
        if found:
            errors[str(node_id)] = {
                "errors": found,
                "dependent_outputs": [],
                "class_type": node.get("class_type"),
            }
    return errors
