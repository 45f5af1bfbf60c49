"""The web client's own zod schemas, read from the installed package's source maps, as a JSON checker.

The client (`comfyui_frontend_package`) ships its TypeScript inside `*.js.map` files. This module finds a
schema definition there (`const zName = z.object({...})`, `.extend({...})`, `z.enum([...])`), turns the
subset of zod the jobs API uses into a small tree, and checks our JSON against it. A client upgrade that
adds a required field then fails our tests, not our users. Only facts are read; nothing is copied.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SCALARS = {"string", "number", "int", "boolean", "unknown", "bigint", "uuid"}


@dataclass
class Spec:
    """One zod type: kind (object/array/enum/record/union/scalar name), flags and children."""

    kind: str
    optional: bool = False
    nullable: bool = False
    fields: dict[str, Spec] = field(default_factory=dict)
    items: Spec | None = None
    choices: list[str] = field(default_factory=list)
    options: list[Spec] = field(default_factory=list)


def static_root() -> Path | None:
    """The installed client's static folder, or None."""
    try:
        import comfyui_frontend_package
    except ImportError:
        return None
    return Path(os.path.dirname(comfyui_frontend_package.__file__)) / "static"


@cache
def sources() -> dict[str, str]:
    """TypeScript sources (path -> text) embedded in the client's source maps that define zod schemas."""
    root = static_root()
    found: dict[str, str] = {}
    if root is None:
        return found
    for path in sorted((root / "assets").glob("*.js.map")):
        raw = path.read_bytes()
        if b"z.object(" not in raw and b"z.enum(" not in raw:
            continue
        data = json.loads(raw)
        for name, text in zip(data.get("sources", []), data.get("sourcesContent") or [], strict=False):
            if text and name.endswith(".ts") and ("z.object(" in text or "z.enum(" in text):
                found.setdefault(name, text)
    return found


def _balanced(text: str, start: int) -> int:
    """Index just past the bracket group opening at text[start]."""
    depth = 0
    i = start
    quote = ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif text.startswith("//", i):
            i = text.index("\n", i)
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced brackets")


def _split_top(body: str) -> list[str]:
    """Split an object/array body at top-level commas, dropping comments."""
    body = re.sub(r"//[^\n]*", "", body)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    parts, depth, current = [], 0, []
    for ch in body:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def definition(name: str, near: str = "") -> tuple[str, str]:
    """(source path, expression) of `const name = ...`, looking first in the source `near`."""
    pattern = re.compile(rf"const {re.escape(name)}\s*(?::[^=]*)?=\s*")
    texts = sources()
    for path in sorted(texts, key=lambda p: p != near):
        match = pattern.search(texts[path])
        if match:
            # parse() reads one call chain from here and ignores what follows it
            return path, texts[path][match.end() :]
    raise KeyError(f"the client's sources define no {name}")


def _chain(expr: str) -> tuple[str, list[tuple[str, str]]]:
    """Split `head.call(args).call2(args2)` into the head and its calls."""
    expr = expr.strip()
    head_match = re.match(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*", expr)
    if not head_match:
        raise ValueError(f"cannot read zod expression {expr[:60]!r}")
    head = head_match.group(0)
    i = head_match.end()
    calls: list[tuple[str, str]] = []
    if i < len(expr) and expr[i] == "(":  # the head itself is called: z.object(...), z.string()
        end = _balanced(expr, i)
        name, _, _ = head.rpartition(".")
        calls.append((head.rsplit(".", 1)[-1], expr[i + 1 : end - 1]))
        head = name
        i = end
    while i < len(expr):
        match = re.match(r"\s*\.\s*([A-Za-z_$][\w$]*)", expr[i:])
        if not match:
            break
        i += match.end()
        if i < len(expr) and expr[i] == "(":
            end = _balanced(expr, i)
            calls.append((match.group(1), expr[i + 1 : end - 1]))
            i = end
        else:
            calls.append((match.group(1), ""))
    return head, calls


def parse(expr: str, near: str = "") -> Spec:
    """A Spec for one zod expression (the subset the client's API schemas use)."""
    head, calls = _chain(expr)
    spec: Spec | None = None
    rest = calls
    if head in ("z", "z.coerce"):
        kind, args = calls[0]
        rest = calls[1:]
        if kind == "object":
            spec = Spec("object", fields=_fields(args, near))
        elif kind == "array":
            spec = Spec("array", items=parse(args, near))
        elif kind == "enum":
            spec = Spec("enum", choices=re.findall(r"'([^']*)'", args))
        elif kind == "record":
            spec = Spec("record", items=parse(_split_top(args)[-1], near))
        elif kind == "union":
            spec = Spec("union", options=[parse(p, near) for p in _split_top(args.strip()[1:-1])])
        elif kind == "literal":
            spec = Spec("enum", choices=[json.loads(args.replace("'", '"'))])
        elif kind in SCALARS:
            spec = Spec(kind)
        else:
            raise ValueError(f"unsupported zod constructor z.{kind}")
    elif ".shape." in head:
        owner, _, name = head.partition(".shape.")
        spec = _copy(resolve(owner, near).fields[name])
    else:
        spec = _copy(resolve(head, near))
    for name, args in rest:
        if name == "optional":
            spec.optional = True
        elif name == "nullable":
            spec.nullable = True
        elif name == "nullish":
            spec.optional = spec.nullable = True
        elif name == "extend":
            spec.fields = {**spec.fields, **_fields(args, near)}
        elif name == "int":
            spec.kind = "int"
    return spec


def _copy(spec: Spec) -> Spec:
    return Spec(
        spec.kind, spec.optional, spec.nullable, dict(spec.fields), spec.items, spec.choices, spec.options
    )


def _fields(args: str, near: str) -> dict[str, Spec]:
    body = args.strip()
    assert body.startswith("{") and body.endswith("}"), body[:40]
    fields = {}
    for part in _split_top(body[1:-1]):
        key, _, expr = part.partition(":")
        fields[key.strip().strip("'\"")] = parse(expr, near)
    return fields


@cache
def resolve(name: str, near: str = "") -> Spec:
    """The Spec of a named schema (`zJobsListResponse`, `zJobDetail`...)."""
    path, expr = definition(name, near)
    return parse(expr, path)


def problems(value: Any, spec: Spec, where: str = "$") -> list[str]:
    """Every place where value breaks spec (empty when the client would accept it)."""
    if value is None:
        return [] if spec.nullable or spec.kind == "unknown" else [f"{where}: null not allowed"]
    kind = spec.kind
    checks = {
        "string": lambda v: isinstance(v, str),
        "uuid": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bigint": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "unknown": lambda v: True,
    }
    if kind in checks:
        return [] if checks[kind](value) else [f"{where}: {value!r} is not a {kind}"]
    if kind == "enum":
        return [] if value in spec.choices else [f"{where}: {value!r} not in {spec.choices}"]
    if kind == "union":
        results = [problems(value, option, where) for option in spec.options]
        return [] if any(not r for r in results) else results[0]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        assert spec.items is not None
        return [p for i, item in enumerate(value) for p in problems(item, spec.items, f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    if kind == "record":
        assert spec.items is not None
        return [p for k, item in value.items() for p in problems(item, spec.items, f"{where}.{k}")]
    found = []
    for name, child in spec.fields.items():
        if name not in value:
            if not child.optional:
                found.append(f"{where}.{name}: required field missing")
            continue
        found += problems(value[name], child, f"{where}.{name}")
    return found
