"""The shape of a litegraph (UI) workflow, checked before conversion so bad files get a precise error.

Only the fields the converter reads are described; everything else a client saves (positions, sizes,
colours, groups, extra) is allowed and ignored. Checking happens once per node and per subgraph
definition, and the error names the node and the offending field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.errors import WorkflowFormatError

_LENIENT = ConfigDict(extra="allow", strict=True)


class UIWidgetRef(BaseModel):
    """The `widget` marker on an input slot that stands for a widget."""

    model_config = _LENIENT
    name: str | None = None


class UISlot(BaseModel):
    """An input or output slot of a node or of a subgraph definition."""

    model_config = _LENIENT
    name: str | None = None
    type: str | None = None
    link: int | str | None = None
    links: list[int | str] | None = None
    widget: UIWidgetRef | None = None


class UINode(BaseModel):
    """One node of a graph."""

    model_config = _LENIENT
    id: int | str
    type: str
    mode: int = 0
    title: str | None = None
    inputs: list[UISlot] | None = None
    outputs: list[UISlot] | None = None
    widgets_values: list[Any] | dict[str, Any] | None = None
    properties: dict[str, Any] | None = None


class UISubgraphDefinition(BaseModel):
    """A subgraph definition; its nodes are checked as UINode entries when its scope is built."""

    model_config = _LENIENT
    id: str
    name: str | None = None
    nodes: list[Any] = []
    links: list[Any] | None = None
    inputs: list[UISlot] | None = None
    outputs: list[UISlot] | None = None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "(the entry)"
        problems.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def check_node(raw: Any, where: str) -> dict[str, Any]:
    """The raw node dict, once it has the shape the converter reads; else a WorkflowFormatError."""
    try:
        UINode.model_validate(raw)
    except ValidationError as exc:
        label = raw.get("id", "?") if isinstance(raw, dict) else "?"
        kind = f" ({raw['type']})" if isinstance(raw, dict) and isinstance(raw.get("type"), str) else ""
        raise WorkflowFormatError(
            f"{where}: node {label}{kind} is malformed: {_describe(exc)}", code="invalid_ui_workflow"
        ) from exc
    assert isinstance(raw, dict)
    return raw


def check_definition(raw: Any) -> dict[str, Any]:
    """The raw subgraph definition, once it has the expected shape; else a WorkflowFormatError."""
    try:
        UISubgraphDefinition.model_validate(raw)
    except ValidationError as exc:
        label = raw.get("name") or raw.get("id") if isinstance(raw, dict) else None
        raise WorkflowFormatError(
            f"subgraph definition {label or '?'!s} is malformed: {_describe(exc)}", code="invalid_ui_workflow"
        ) from exc
    assert isinstance(raw, dict)
    return raw
