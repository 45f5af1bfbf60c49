"""Where a UI input's value comes from: through reroutes, primitives, bypassed nodes and subgraph boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import WorkflowFormatError
from engine.formats.ui_graph import MODE_BYPASS, SUBGRAPH_INPUT_ID, VIRTUAL_TYPES, Scope
from engine.formats.ui_transforms import PRIMITIVE_REPLACE_PROPERTY
from engine.formats.ui_widgets import is_control_mode, widget_specs


@dataclass(frozen=True)
class OutputRef:
    """The input is fed by output `slot` of the node with API id `node_id`."""

    node_id: str
    slot: int


@dataclass(frozen=True)
class Constant:
    """The input is fed by a widget value (a PrimitiveNode's, or a subgraph instance's promoted widget).

    A PrimitiveNode writes its value into the target widget before the client serialises it, so the
    target widget's own queue-time transform applies (`into_widget`); `expand_tokens` says the primitive
    asks for `%...%` tokens to be expanded first. A promoted widget's value is passed on unchanged.
    """

    value: Any
    into_widget: bool = False
    expand_tokens: bool = False


Resolved = OutputRef | Constant | None


@dataclass(frozen=True)
class InstanceWidgets:
    """What a subgraph instance's own widgets set: per definition input, and per inner node widget."""

    inputs: dict[int, Any]  # definition input index -> value (widgets promoted through an input)
    inner: dict[str, dict[str, Any]]  # inner node id -> widget name -> value (newer `proxyWidgets`)


def types_compatible(a: Any, b: Any) -> bool:
    """Litegraph's connection rule: `*`/empty match anything; comma lists match on any shared type."""
    if a in ("*", "", 0, None) or b in ("*", "", 0, None) or a == b:
        return True
    a_types = {t.strip() for t in str(a).lower().split(",")}
    b_types = {t.strip() for t in str(b).lower().split(",")}
    return bool(a_types & b_types)


def bypass_input_index(node: dict[str, Any], slot: int, want: Any) -> int:
    """The input a bypassed node forwards to output `slot` for a target of type `want` (-1: none).

    Same slot index if its type fits both the output and the target, else the first exact type
    match, else the first input compatible with both.
    """
    inputs = node.get("inputs") or []
    if want in ("*", "", None):
        return slot if slot < len(inputs) else (0 if inputs else -1)
    outputs = node.get("outputs") or []
    out_type = outputs[slot].get("type", "*") if slot < len(outputs) else "*"
    if slot < len(inputs):
        same = inputs[slot].get("type", "*")
        if types_compatible(same, out_type) and types_compatible(same, want):
            return slot
    for index, inp in enumerate(inputs):
        if inp.get("type") == want:
            return index
    for index, inp in enumerate(inputs):
        in_type = inp.get("type", "*")
        if types_compatible(in_type, out_type) and types_compatible(in_type, want):
            return index
    return -1


class Resolver:
    """Resolves UI input slots to API links or constants; one per conversion (it memoises per call)."""

    def __init__(self, object_info: dict[str, Any]):
        self.object_info = object_info
        self._promoted: dict[int, InstanceWidgets] = {}

    def resolve_input(self, scope: Scope, node: dict[str, Any], slot: int, want: Any) -> Resolved:
        """What feeds input `slot` of `node` (None: nothing, the node keeps its own widget value)."""
        return self._input(scope, node, slot, want, set())

    def _guard(self, scope: Scope, node: dict[str, Any], kind: str, slot: int, seen: set[str]) -> None:
        key = f"{scope.prefix}{node['id']}[{kind}]{slot}"
        if key in seen:
            raise WorkflowFormatError(
                f"node {scope.exec_id(node)} ({node['type']}): links loop through reroutes, bypassed "
                "nodes or subgraph boundaries; break the loop",
                code="invalid_ui_workflow",
            )
        seen.add(key)

    def _input(self, scope: Scope, node: dict[str, Any], slot: int, want: Any, seen: set[str]) -> Resolved:
        self._guard(scope, node, "I", slot, seen)
        inputs = node.get("inputs") or []
        if slot >= len(inputs) or inputs[slot].get("link") is None:
            return None
        link_id = str(inputs[slot]["link"])
        link = scope.links.get(link_id)
        if link is None:
            raise WorkflowFormatError(
                f"node {scope.exec_id(node)} ({node['type']}) input {inputs[slot].get('name')!r} uses "
                f"link {link_id}, which the workflow does not define",
                code="invalid_ui_workflow",
            )
        if link.origin_id == SUBGRAPH_INPUT_ID and scope.instance is not None:
            return self._from_instance_input(scope, link.origin_slot, want, seen)
        origin = scope.nodes.get(link.origin_id)
        if origin is None:
            raise WorkflowFormatError(
                f"node {scope.exec_id(node)} ({node['type']}) input {inputs[slot].get('name')!r} is "
                f"linked from node {scope.prefix}{link.origin_id}, which does not exist",
                code="invalid_ui_workflow",
            )
        return self._output(scope, origin, link.origin_slot, want, seen)

    def _output(self, scope: Scope, node: dict[str, Any], slot: int, want: Any, seen: set[str]) -> Resolved:
        self._guard(scope, node, "O", slot, seen)
        if node["type"] == "PrimitiveNode":
            values = node.get("widgets_values")
            if not isinstance(values, list) or not values:
                return None
            replace = bool((node.get("properties") or {}).get(PRIMITIVE_REPLACE_PROPERTY))
            return Constant(values[0], into_widget=True, expand_tokens=replace)
        if node.get("mode", 0) == MODE_BYPASS:
            index = bypass_input_index(node, slot, want)
            return None if index < 0 else self._input(scope, node, index, want, seen)
        if scope.is_instance(node):
            return self._from_instance_output(scope, node, slot, want, seen)
        if node["type"] in VIRTUAL_TYPES:  # Reroute: output n forwards input n; notes feed nothing
            return self._input(scope, node, slot, want, seen)
        # Muted nodes land here too; links to them are deleted once every node is converted.
        return OutputRef(scope.exec_id(node), slot)

    def _from_instance_output(
        self, scope: Scope, instance: dict[str, Any], slot: int, want: Any, seen: set[str]
    ) -> Resolved:
        inner = scope.child(instance)
        link = inner.output_link(slot)
        if link is None:
            return None
        if link.origin_id == SUBGRAPH_INPUT_ID:  # the subgraph wires an input straight to an output
            return self._from_instance_input(inner, link.origin_slot, want, seen)
        origin = inner.nodes.get(link.origin_id)
        if origin is None:
            raise WorkflowFormatError(
                f"subgraph instance {scope.exec_id(instance)}: output {slot} is fed by inner node "
                f"{link.origin_id}, which does not exist",
                code="invalid_ui_workflow",
            )
        return self._output(inner, origin, link.origin_slot, want, seen)

    def _from_instance_input(self, inner: Scope, def_slot: int, want: Any, seen: set[str]) -> Resolved:
        """Cross a subgraph boundary outwards: the instance's input link, else its promoted widget."""
        assert inner.parent is not None and inner.instance is not None and inner.definition is not None
        instance = inner.instance
        index = instance_input_index(inner.definition, instance, def_slot)
        if index is not None and (instance.get("inputs") or [])[index].get("link") is not None:
            return self._input(inner.parent, instance, index, want, seen)
        promoted = self.instance_widgets(inner).inputs
        return Constant(promoted[def_slot]) if def_slot in promoted else None

    def instance_widgets(self, inner: Scope) -> InstanceWidgets:
        """The values the instance owning `inner` gives through its own widgets (read once per instance)."""
        key = id(inner)
        if key not in self._promoted:
            self._promoted[key] = self._read_instance_widgets(inner)
        return self._promoted[key]

    def widget_overrides(self, scope: Scope, node: dict[str, Any]) -> dict[str, Any]:
        """Widget values the enclosing instance sets on inner `node` through `proxyWidgets`."""
        if scope.instance is None:
            return {}
        return self.instance_widgets(scope).inner.get(str(node["id"]), {})

    def _read_instance_widgets(self, inner: Scope) -> InstanceWidgets:
        assert inner.instance is not None and inner.definition is not None
        values = inner.instance.get("widgets_values")
        if not isinstance(values, list):
            return InstanceWidgets({}, {})
        proxies = (inner.instance.get("properties") or {}).get("proxyWidgets")
        if isinstance(proxies, list):
            return _proxy_widgets(inner.definition, proxies, values)
        return InstanceWidgets(_positional(self._widget_inputs(inner), values), {})

    def _widget_inputs(self, inner: Scope) -> list[tuple[int, bool]]:
        """(definition input index, takes a control entry) for inputs wired to an inner widget, in order."""
        found: dict[int, bool] = {}
        for link in inner.links.values():
            if link.origin_id != SUBGRAPH_INPUT_ID or link.origin_slot in found:
                continue
            control = self._widget_control(inner.nodes.get(link.target_id), link.target_slot)
            if control is not None:
                found[link.origin_slot] = control
        return sorted(found.items())

    def _widget_control(self, target: dict[str, Any] | None, slot: int) -> bool | None:
        """None if input `slot` of `target` is no widget; else whether a control entry follows its value."""
        slots = (target or {}).get("inputs") or []
        if target is None or slot >= len(slots) or not slots[slot].get("widget"):
            return None
        name = slots[slot]["widget"].get("name", slots[slot].get("name"))
        info = self.object_info.get(target["type"])
        specs = {spec.name: spec for spec in widget_specs(info)} if info else {}
        return specs[name].control if name in specs else False


def _positional(widget_slots: list[tuple[int, bool]], values: list[Any]) -> dict[int, Any]:
    result: dict[int, Any] = {}
    pos = 0
    for def_slot, control in widget_slots:
        if pos >= len(values):
            break
        if values[pos] is not None:
            result[def_slot] = values[pos]
        pos += 1
        if control and pos < len(values) and is_control_mode(values[pos]):
            pos += 1
    return result


def _proxy_widgets(definition: dict[str, Any], proxies: list[Any], values: list[Any]) -> InstanceWidgets:
    """Newer clients list promoted widgets as [inner node id, widget name] pairs aligned with
    widgets_values; inner id "-1" names a subgraph input instead of an inner node."""
    by_name: dict[Any, int] = {}
    for index, inp in enumerate(definition.get("inputs") or []):
        by_name.setdefault(inp.get("name"), index)
    result = InstanceWidgets({}, {})
    for entry, value in zip(proxies, values, strict=False):
        if not isinstance(entry, list | tuple) or len(entry) != 2 or value is None:
            continue
        node_id, widget = str(entry[0]), entry[1]
        if node_id == "-1":
            if widget in by_name:
                result.inputs[by_name[widget]] = value
        else:
            result.inner.setdefault(node_id, {})[widget] = value
    return result


def instance_input_index(definition: dict[str, Any], instance: dict[str, Any], def_slot: int) -> int | None:
    """Index in the instance's saved `inputs` of definition input `def_slot`, matched by name.

    Saved instances may omit unlinked widget inputs (the client compresses them away), so indices
    of the definition and of the instance differ; names are stable.
    """
    def_inputs = definition.get("inputs") or []
    if def_slot >= len(def_inputs):
        return None
    name = def_inputs[def_slot].get("name")
    # The n-th definition input with this name pairs with the n-th instance input with it.
    rank = sum(1 for inp in def_inputs[:def_slot] if inp.get("name") == name)
    for index, inp in enumerate(instance.get("inputs") or []):
        if inp.get("name") == name:
            if rank == 0:
                return index
            rank -= 1
    return None
