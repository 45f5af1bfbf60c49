"""ComfyUI UI-format (litegraph) workflows converted to API-format prompts headlessly, and back.

`ui_to_api` does what the ComfyUI frontend's graphToPrompt does, from node schemas alone: widget values
are mapped positionally (hidden control_after_generate and upload entries dropped), subgraphs flattened
with colon-joined ids, Reroute / PrimitiveNode / Note / MarkdownNote resolved away, muted nodes and the
links from them removed, bypassed nodes passed through to an input of matching type.

A node whose type is neither in `object_info`, a subgraph nor frontend-only is passed through with its
class_type and its links, so validation reports "unknown node" together with every other problem; its
`widgets_values` cannot be named without a schema and are kept nowhere.
"""

from __future__ import annotations

from typing import Any

from engine.errors import WorkflowFormatError
from engine.formats.ui_export import api_to_ui
from engine.formats.ui_graph import Scope
from engine.formats.ui_resolve import Constant, OutputRef, Resolver
from engine.formats.ui_widgets import WidgetSpec, values_by_name, widget_specs, wrap_list

__all__ = ["api_to_ui", "is_ui_format", "ui_to_api"]


def is_ui_format(data: Any) -> bool:
    """True for a litegraph (UI) workflow: a dict with a `nodes` list."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def ui_to_api(ui: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """Convert a UI workflow to an API prompt `{id: {class_type, inputs, _meta: {title}}}`.

    `object_info` is the `/object_info` dict (class_type -> schema). Raises WorkflowFormatError for a
    file that is not a UI workflow or whose links point at nodes or links that do not exist.
    """
    if not is_ui_format(ui):
        raise WorkflowFormatError(
            "not a UI-format workflow: expected an object with a `nodes` list", code="invalid_ui_workflow"
        )
    root = Scope.root(ui)
    resolver = Resolver(object_info)
    specs: dict[str, tuple[WidgetSpec, ...]] = {}
    prompt: dict[str, Any] = {}
    for scope, node in root.walk():
        prompt[scope.exec_id(node)] = _convert_node(scope, node, object_info, resolver, specs)
    _drop_links_to_absent_nodes(prompt)
    return prompt


def _convert_node(
    scope: Scope,
    node: dict[str, Any],
    object_info: dict[str, Any],
    resolver: Resolver,
    specs: dict[str, tuple[WidgetSpec, ...]],
) -> dict[str, Any]:
    class_type = node["type"]
    info = object_info.get(class_type)
    inputs: dict[str, Any] = {}
    if info is not None:
        if class_type not in specs:
            specs[class_type] = widget_specs(info)
        inputs.update(values_by_name(specs[class_type], node.get("widgets_values")))
    inputs.update((name, wrap_list(value)) for name, value in resolver.widget_overrides(scope, node).items())
    for index, slot in enumerate(node.get("inputs") or []):
        if slot.get("link") is None:
            continue
        resolved = resolver.resolve_input(scope, node, index, slot.get("type", "*"))
        if isinstance(resolved, OutputRef):
            inputs[slot.get("name")] = [resolved.node_id, resolved.slot]
        elif isinstance(resolved, Constant):
            # A PrimitiveNode writes into the target widget, which the slot names.
            widget = slot.get("widget") if isinstance(slot.get("widget"), dict) else {}
            inputs[widget.get("name", slot.get("name"))] = wrap_list(resolved.value)
    title = node.get("title") or (info or {}).get("display_name") or class_type
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


def _drop_links_to_absent_nodes(prompt: dict[str, Any]) -> None:
    """Links from muted (or otherwise absent) nodes are removed, as the frontend does."""
    for node in prompt.values():
        inputs = node["inputs"]
        for name in [n for n, v in inputs.items() if isinstance(v, list) and v and v[0] not in prompt]:
            del inputs[name]
