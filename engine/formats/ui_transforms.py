"""The value rewrites the ComfyUI web client performs while it queues a UI graph, as pure functions.

Read from the pinned client (comfyui-frontend-package 1.58.1) and checked against prompts it queued
(tests/engine/data/client_prompts). In the order the client applies them:

1. A PrimitiveNode whose "Run widget replace on values" property is on expands `%...%` tokens in its
   value before writing it into the widgets it feeds.
2. Each widget marked `dynamicPrompts` in the node schema: comments are cut (`/* block */`, and `//` to
   the end of the line, also inside a URL such as `http://host`), then each `{a|b|...}` group is replaced
   by one of its options, picked at random (the client's unseeded `Math.random`; nested groups inside the
   chosen option are resolved afterwards), and `\\{` `\\}` `\\|` lose their backslash.
3. `filename_prefix` of the client's save nodes: `%date:FORMAT%` becomes the local time, and
   `%Node.widget%` the widget's current value (node matched by its "Node name for S&R" property, else
   by title), with characters that are illegal in file names replaced by `_`.

The UI workflow the client sends beside the prompt (`extra_pnginfo.workflow`) keeps the values as typed.
The clock and the random source are injected through `QueueContext`, so a conversion can be pinned.
"""

from __future__ import annotations

import math
import random as stdlib_random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

# Save nodes whose filename_prefix the client expands (its saveImageExtraOutput extension).
SAVE_NODE_TYPES = frozenset(
    {
        "SaveImage",
        "SaveImageAdvanced",
        "SaveSVGNode",
        "SaveVideo",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveAudioMP3",
        "SaveAudioOpus",
        "SaveAudioAdvanced",
        "SaveGLB",
        "Save3DAdvanced",
        "SaveGaussianSplat",
        "SavePointCloud",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)
FILENAME_WIDGET = "filename_prefix"
SEARCH_NAME_PROPERTY = "Node name for S&R"
PRIMITIVE_REPLACE_PROPERTY = "Run widget replace on values"

# JS `.` stops at these line terminators, so a `//` comment ends at any of them.
COMMENT = re.compile(r"/\*.*?\*/|//[^\n\r\u2028\u2029]*", re.DOTALL)
ESCAPED_SYNTAX = re.compile(r"\\([{}|])")
TOKEN = re.compile(r"%([^%]+)%")
DATE_FIELD = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
FILENAME_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')
# Node pack identity the client copies from node properties into `_meta` (its workflow schema's rules).
REPO_LIKE_ID = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?", re.ASCII)
GITHUB_USER = re.compile(r"(?!-)(?!.*--)[a-zA-Z0-9-]+(?<!-)", re.ASCII)
GIT_HASH = re.compile(r"[0-9a-fA-F]{4,40}", re.ASCII)
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([\da-z-]+(?:\.[\da-z-]+)*))?(?:\+([\da-z-]+(?:\.[\da-z-]+)*))?",
    re.ASCII,
)
# Park-Miller "minimal standard" generator: exact in both Python ints and JS doubles (products < 2**53),
# so a browser can be given the very same sequence when fixtures are made.
PM_MODULUS = 2_147_483_647
PM_MULTIPLIER = 48_271


class ChoiceRandom:
    """A seeded source of floats in [0, 1) for `{a|b}` choices (the client itself never seeds)."""

    def __init__(self, seed: int):
        self.state = seed % PM_MODULUS or 1

    def __call__(self) -> float:
        """The next value, like one `Math.random()` call."""
        self.state = self.state * PM_MULTIPLIER % PM_MODULUS
        return self.state / PM_MODULUS


@dataclass
class QueueContext:
    """What a queue-time conversion depends on beyond the file: the clock and the choice randomness."""

    now: datetime = field(default_factory=datetime.now)
    random: Callable[[], float] = stdlib_random.random

    @classmethod
    def pinned(cls, now: datetime | None = None, seed: int | None = None) -> QueueContext:
        """A context with a fixed clock and/or reproducible choices; unset parts behave like the client."""
        return cls(
            now=now or datetime.now(),
            random=stdlib_random.random if seed is None else ChoiceRandom(seed),
        )


def strip_comments(text: str) -> str:
    """Cut `/* ... */` and `// ...` (to the end of the line) comments, URLs included, as the client does."""
    return COMMENT.sub("", text)


def process_dynamic_prompt(text: str, rand: Callable[[], float]) -> str:
    """Resolve `{a|b}` groups (after stripping comments), consuming `rand` in the client's order."""
    text = strip_comments(text)
    out: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        pos += 1
        if char == "\\":
            escaped, pos = _escape(text, pos)
            out.append(escaped)
        elif char == "{":
            options, pos = _options(text, pos)
            chosen = options[int(rand() * len(options))]
            out.append(process_dynamic_prompt(chosen, rand))
        else:
            out.append(char)
    return ESCAPED_SYNTAX.sub(r"\1", "".join(out))


def _escape(text: str, pos: int) -> tuple[str, int]:
    # The client reads past the end of the text here and so appends the JS word "undefined".
    return "\\" + (text[pos] if pos < len(text) else "undefined"), pos + 1


def _options(text: str, pos: int) -> tuple[list[str], int]:
    """The raw options of a group whose `{` is just before `pos`; an unclosed group runs to the end."""
    options: list[str] = []
    choice: list[str] = []
    depth = 0
    while pos < len(text):
        char = text[pos]
        pos += 1
        if char == "\\":
            escaped, pos = _escape(text, pos)
            choice.append(escaped)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if not depth:
                break
            depth -= 1
        elif char == "|" and not depth:
            options.append("".join(choice))
            choice = []
            continue
        choice.append(char)
    options.append("".join(choice))
    return options, pos


def format_client_date(pattern: str, now: datetime) -> str:
    """The client's `%date:...%` formatting: yyyy yy MM M dd d hh h mm m ss s (24-hour local clock)."""
    fields = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "yy":
            return str(now.year)[2:]
        if text == "yyyy":
            return str(now.year)
        if text[0] in fields:
            return str(fields[text[0]]).rjust(len(text), "0")
        return text

    return DATE_FIELD.sub(one, pattern)


def js_string(value: Any) -> str:
    """`String(value)` in JavaScript for JSON values (numbers as JS prints them: 8.0 -> "8")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _js_number(value: float) -> str:
    """ECMAScript Number::toString from the shortest round-trip digits (what repr also finds)."""
    if value == 0:
        return "0"
    sign, digits_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple))
    assert isinstance(exponent, int)
    k, n = len(digits), exponent + len(digits)
    prefix = "-" if sign else ""
    if k <= n <= 21:
        return prefix + digits + "0" * (n - k)
    if 0 < n <= 21:
        return prefix + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return prefix + "0." + "0" * -n + digits
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{prefix}{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


def js_json_value(value: Any) -> Any:
    """A JSON value as the client re-emits it: every number held as a double and printed shortest, so
    8.0 becomes 8, an integer beyond 2**53 is rounded, and an overflowing number becomes null."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        if math.isinf(number) or math.isnan(number):
            return None
        if number.is_integer() and abs(number) < 1e21:
            return int(_js_number(number))  # the digits JS prints: 2**64 reads back as 18446744073709552000
        return number
    if isinstance(value, list):
        return [js_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: js_json_value(item) for key, item in value.items()}
    return value


class WidgetValues(Protocol):
    """Where `%Node.widget%` tokens look up values."""

    def widget_value(self, node_name: str, widget_name: str) -> tuple[bool, Any]:
        """(found, current value) of the widget on the first node the name designates."""


def apply_text_replacements(text: str, source: WidgetValues, now: datetime) -> str:
    """Expand `%date:FORMAT%` and `%Node.widget%` tokens as the client does; others stay as written.

    The token is split on dots: exactly two parts name a node and a widget, anything else is a date
    when it starts with `date:` (only up to the first dot is the format).
    """

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if len(parts) != 2:
            return format_client_date(parts[0][5:], now) if parts[0].startswith("date:") else match.group(0)
        found, value = source.widget_value(parts[0], parts[1])
        if not found:
            return match.group(0)
        return FILENAME_UNSAFE.sub("_", "" if value is None else js_string(value))

    return TOKEN.sub(one, text)


def pack_meta(properties: Mapping[str, Any] | None) -> dict[str, str]:
    """The `cnr_id`, `aux_id` and `ver` node properties the client copies into `_meta` when valid."""
    properties = properties or {}
    meta: dict[str, str] = {}
    cnr_id = properties.get("cnr_id")
    if isinstance(cnr_id, str) and _repo_like(cnr_id):
        meta["cnr_id"] = cnr_id
    aux_id = properties.get("aux_id")
    if isinstance(aux_id, str) and re.fullmatch(r"[^/]+/[^/]+", aux_id):
        user, repo = aux_id.split("/")
        if _github_user(user) and _repo_like(repo):
            meta["aux_id"] = aux_id
    version = properties.get("ver")
    if isinstance(version, str):
        bare = version[1:] if version.startswith("v") else version
        if SEMVER.fullmatch(bare) or GIT_HASH.fullmatch(bare):
            meta["ver"] = bare
        elif version == "unknown":
            meta["ver"] = version
    return meta


def _repo_like(value: str) -> bool:
    return (
        1 <= len(value) <= 100
        and REPO_LIKE_ID.fullmatch(value) is not None
        and not re.search(r"^[_\-.]|[_\-.]$", value)
    )


def _github_user(value: str) -> bool:
    return 1 <= len(value) <= 39 and GITHUB_USER.fullmatch(value) is not None
