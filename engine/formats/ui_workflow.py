"""ComfyUI UI-format (litegraph) workflows converted to API-format prompts headlessly, and back.

`ui_to_api` does what the ComfyUI frontend's graphToPrompt does, from node schemas alone: widget values
are mapped positionally (hidden control_after_generate and upload entries dropped), subgraphs flattened
with colon-joined ids, Reroute / PrimitiveNode / Note / MarkdownNote resolved away, muted nodes and the
links from them removed, bypassed nodes passed through to an input of matching type. Widget values then
get the client's queue-time rewrites (comments and `{a|b}` choices in dynamic-prompt text, `%...%` tokens
in save nodes' filename_prefix; see engine.formats.ui_transforms), in the client's node and widget order so a
seeded random source picks the same options the client would.

A node whose type is neither in `object_info`, a subgraph nor frontend-only is passed through with its
class_type and its links, so validation reports "unknown node" together with every other problem; its
`widgets_values` cannot be named without a schema and are kept nowhere.
"""

from __future__ import annotations

from typing import Any

from engine.errors import WorkflowFormatError
from engine.formats.ui_export import api_to_ui
from engine.formats.ui_graph import VIRTUAL_TYPES, Scope
from engine.formats.ui_resolve import Constant, OutputRef, Resolver
from engine.formats.ui_transforms import (
    FILENAME_WIDGET,
    SAVE_NODE_TYPES,
    SEARCH_NAME_PROPERTY,
    QueueContext,
    apply_text_replacements,
    js_json_value,
    pack_meta,
    process_dynamic_prompt,
)
from engine.formats.ui_widgets import WidgetSpec, raw_values, widget_specs, wrap_list

__all__ = ["QueueContext", "api_to_ui", "is_ui_format", "ui_to_api"]


def is_ui_format(data: Any) -> bool:
    """True for a litegraph (UI) workflow: a dict with a `nodes` list."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def ui_to_api(
    ui: dict[str, Any], object_info: dict[str, Any], queue: QueueContext | None = None
) -> dict[str, Any]:
    """Convert a UI workflow to an API prompt `{id: {class_type, inputs, _meta: {title}}}`.

    `object_info` is the `/object_info` dict (class_type -> schema). `queue` supplies the clock for
    `%date:...%` tokens and the random source for `{a|b}` choices (default: now, unseeded, as the client).
    Raises WorkflowFormatError for a file that is not a UI workflow or whose links point at nodes or
    links that do not exist.
    """
    if not is_ui_format(ui):
        raise WorkflowFormatError(
            "not a UI-format workflow: expected an object with a `nodes` list", code="invalid_ui_workflow"
        )
    conversion = _Conversion(Scope.root(ui), object_info, queue or QueueContext())
    prompt: dict[str, Any] = {}
    for scope, node in conversion.root.walk():
        prompt[scope.exec_id(node)] = conversion.convert_node(scope, node)
    _drop_links_to_absent_nodes(prompt)
    return prompt


class _Conversion:
    """State of one conversion: schemas, link resolution, and the widget values tokens may name."""

    def __init__(self, root: Scope, object_info: dict[str, Any], queue: QueueContext):
        self.root = root
        self.object_info = object_info
        self.queue = queue
        self.resolver = Resolver(object_info)
        self._specs: dict[str, tuple[WidgetSpec, ...]] = {}
        self._named: list[tuple[str | None, str, dict[str, Any]]] | None = None

    def specs(self, class_type: str) -> tuple[WidgetSpec, ...]:
        """The widgets the client creates for a node type (none for types without a schema)."""
        if class_type not in self._specs:
            info = self.object_info.get(class_type)
            self._specs[class_type] = widget_specs(info) if info is not None else ()
        return self._specs[class_type]

    def widget_values(self, scope: Scope, node: dict[str, Any], for_tokens: bool = False) -> dict[str, Any]:
        """A node's widget values as the client holds them when it serialises: saved values, then the
        enclosing instance's promoted ones, then what PrimitiveNodes write into them.

        `for_tokens`: the values `%Node.widget%` reads, control_after_generate included; primitives'
        own token expansion is not applied there (the client would see it only for primitives that
        precede the node in execution order).
        """
        values = raw_values(self.specs(node["type"]), node.get("widgets_values"), for_tokens)
        values.update(self.resolver.widget_overrides(scope, node))
        for index, slot in enumerate(node.get("inputs") or []):
            if slot.get("link") is None:
                continue
            resolved = self.resolver.resolve_input(scope, node, index, slot.get("type", "*"))
            if isinstance(resolved, Constant) and resolved.into_widget:
                value = resolved.value
                if resolved.expand_tokens and isinstance(value, str) and not for_tokens:
                    value = apply_text_replacements(value, self, self.queue.now)
                values[_widget_name(slot)] = value
        return values

    def convert_node(self, scope: Scope, node: dict[str, Any]) -> dict[str, Any]:
        """One API prompt entry: widgets serialised in order (with their transforms), then links."""
        class_type = node["type"]
        values = self.widget_values(scope, node)
        inputs: dict[str, Any] = {}
        for spec in self.specs(class_type):
            if spec.name in values:
                inputs[spec.name] = wrap_list(self._serialise(class_type, spec, values.pop(spec.name)))
        inputs.update((name, wrap_list(value)) for name, value in values.items())
        for index, slot in enumerate(node.get("inputs") or []):
            if slot.get("link") is None:
                continue
            resolved = self.resolver.resolve_input(scope, node, index, slot.get("type", "*"))
            if isinstance(resolved, OutputRef):
                inputs[slot.get("name")] = [resolved.node_id, resolved.slot]
            elif isinstance(resolved, Constant) and not resolved.into_widget:
                inputs[_widget_name(slot)] = wrap_list(resolved.value)
        # The client's prompt is JSON written by JavaScript: numbers come out as a double prints them.
        inputs = {
            name: value if isinstance(value, list) else js_json_value(value) for name, value in inputs.items()
        }
        info = self.object_info.get(class_type) or {}
        title = node.get("title") or info.get("display_name") or class_type
        return {
            "inputs": inputs,
            "class_type": class_type,
            "_meta": {"title": title, **pack_meta(node.get("properties"))},
        }

    def _serialise(self, class_type: str, spec: WidgetSpec, value: Any) -> Any:
        """The value the client's widget hands to the prompt (its serializeValue hook, if any)."""
        if not isinstance(value, str):
            return value
        if spec.dynamic_prompts:
            return process_dynamic_prompt(value, self.queue.random)
        if spec.name == FILENAME_WIDGET and class_type in SAVE_NODE_TYPES:
            return apply_text_replacements(value, self, self.queue.now)
        return value

    def widget_value(self, node_name: str, widget_name: str) -> tuple[bool, Any]:
        """`%Node.widget%` lookup over every node, subgraph contents first (the client's traversal):
        the first node whose "Node name for S&R" is node_name, else the first so titled."""
        if self._named is None:
            self._named = list(self._name_nodes(self.root))
        matches = [entry for entry in self._named if entry[0] == node_name]
        matches = matches or [entry for entry in self._named if entry[1] == node_name]
        if not matches or widget_name not in matches[0][2]:
            return False, None
        return True, matches[0][2][widget_name]

    def _name_nodes(self, scope: Scope) -> Any:
        for node in scope.nodes.values():
            if scope.is_instance(node):
                yield from self._name_nodes(scope.child(node))
            yield self._search_name(node), self._title(node), self._widgets_of(scope, node)

    def _search_name(self, node: dict[str, Any]) -> str | None:
        properties = node.get("properties") or {}
        if SEARCH_NAME_PROPERTY in properties:
            name = properties[SEARCH_NAME_PROPERTY]
            return name if isinstance(name, str) else None
        # The client gives every schema node but the save nodes this property, set to its type.
        known = node["type"] in self.object_info and node["type"] not in SAVE_NODE_TYPES
        return node["type"] if known else None

    def _title(self, node: dict[str, Any]) -> str:
        if node.get("title"):
            return str(node["title"])
        if node["type"] == "PrimitiveNode":
            return "Primitive"
        return (self.object_info.get(node["type"]) or {}).get("display_name") or node["type"]

    def _widgets_of(self, scope: Scope, node: dict[str, Any]) -> dict[str, Any]:
        if node["type"] == "PrimitiveNode":
            # Its one widget carries the name of the widget it feeds.
            outputs = node.get("outputs") or [{}]
            name = _widget_name(outputs[0]) if isinstance(outputs[0].get("widget"), dict) else None
            values = node.get("widgets_values")
            return {name: values[0]} if name and isinstance(values, list) and values else {}
        if node["type"] in VIRTUAL_TYPES or scope.is_instance(node):
            return {}
        return self.widget_values(scope, node, for_tokens=True)


def _widget_name(slot: dict[str, Any]) -> Any:
    """The widget an input slot stands for (a PrimitiveNode writes into it); its own name otherwise."""
    widget = slot.get("widget")
    return widget.get("name", slot.get("name")) if isinstance(widget, dict) else slot.get("name")


def _drop_links_to_absent_nodes(prompt: dict[str, Any]) -> None:
    """Links from muted (or otherwise absent) nodes are removed, as the frontend does."""
    for node in prompt.values():
        inputs = node["inputs"]
        for name in [n for n, v in inputs.items() if isinstance(v, list) and v and v[0] not in prompt]:
            del inputs[name]
