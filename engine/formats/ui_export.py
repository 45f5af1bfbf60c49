"""Best-effort API prompt -> litegraph v0.4 UI workflow, laid out left to right by graph depth."""

from __future__ import annotations

from collections import deque
from typing import Any

from engine.formats.ui_widgets import WidgetSpec, ordered_inputs, widget_specs

COLUMN_WIDTH = 380
NODE_WIDTH = 320
ROW_GAP = 40
UPLOAD_ENTRY = "image"  # the saved value of the client's upload button widget


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__value__"}:
        return value["__value__"]
    return value


def _ui_id(api_id: str) -> int | str:
    """Numeric API ids become litegraph's integer ids; other ids stay strings (round trip keeps them)."""
    return int(api_id) if api_id.isdecimal() and str(int(api_id)) == api_id else api_id


def _slot_type(entry: Any) -> str:
    """The socket type the client shows for a schema entry (a choice list is a COMBO)."""
    io_type = entry[0] if isinstance(entry, list | tuple) and entry else entry
    return io_type if isinstance(io_type, str) else "COMBO"


def _depths(prompt: dict[str, Any]) -> dict[str, int]:
    """Longest-path depth of every node from the sources; nodes on a cycle go one column past the rest."""
    children: dict[str, list[str]] = {node_id: [] for node_id in prompt}
    indegree = dict.fromkeys(prompt, 0)
    for node_id, node in prompt.items():
        for value in (node.get("inputs") or {}).values():
            if _is_link(value) and value[0] in prompt:
                children[value[0]].append(node_id)
                indegree[node_id] += 1
    depth = dict.fromkeys(prompt, 0)
    queue = deque(node_id for node_id, count in indegree.items() if count == 0)
    done = set()
    while queue:
        node_id = queue.popleft()
        done.add(node_id)
        for child in children[node_id]:
            depth[child] = max(depth[child], depth[node_id] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    last = max(depth.values(), default=0) + 1
    for node_id in prompt:
        if node_id not in done:
            depth[node_id] = last
    return depth


class _Builder:
    """Accumulates nodes and links of the UI workflow being built."""

    def __init__(self, prompt: dict[str, Any], object_info: dict[str, Any]):
        self.prompt = prompt
        self.object_info = object_info
        self.links: list[list[Any]] = []
        self._schemas: dict[str, tuple[list[tuple[str, Any]], tuple[WidgetSpec, ...]]] = {}
        self.outputs: dict[str, list[dict[str, Any]]] = {
            node_id: self._output_slots(node) for node_id, node in prompt.items()
        }

    def _output_slots(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        info = self.object_info.get(str(node.get("class_type")))
        if info is None:
            return []
        names = info.get("output_name") or info.get("output") or []
        return [
            {"name": names[i] if i < len(names) else io_type, "type": io_type, "links": [], "slot_index": i}
            for i, io_type in enumerate(info.get("output") or [])
        ]

    def _schema(
        self, class_type: str, info: dict[str, Any]
    ) -> tuple[list[tuple[str, Any]], tuple[WidgetSpec, ...]]:
        """Ordered inputs and widgets of a class, derived once per conversion."""
        if class_type not in self._schemas:
            self._schemas[class_type] = (ordered_inputs(info), widget_specs(info))
        return self._schemas[class_type]

    def _link(self, value: list[Any], target: str, target_slot: int) -> int | None:
        origin, slot = value
        if origin not in self.prompt:
            return None
        outputs = self.outputs[origin]
        while len(outputs) <= slot:  # an unknown origin class: make the slots its links need
            outputs.append({"name": "*", "type": "*", "links": [], "slot_index": len(outputs)})
        link_id = len(self.links) + 1
        outputs[slot]["links"].append(link_id)
        self.links.append([link_id, _ui_id(origin), slot, _ui_id(target), target_slot, outputs[slot]["type"]])
        return link_id

    def node_inputs(self, node_id: str, node: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        """The node's input slots (sockets, and linked widgets) and its positional widgets_values."""
        given = node.get("inputs") or {}
        info = self.object_info.get(str(node.get("class_type")))
        slots: list[dict[str, Any]] = []
        seen = set()
        if info is not None:
            ordered, widgets = self._schema(str(node.get("class_type")), info)
            specs = {spec.name for spec in widgets}
            for name, entry in ordered:
                seen.add(name)
                value = given.get(name)
                if name in specs and not _is_link(value):
                    continue
                slot: dict[str, Any] = {"name": name, "type": _slot_type(entry), "link": None}
                if name in specs:
                    slot["widget"] = {"name": name}
                slots.append(slot)
        for name, value in given.items():  # undeclared links (variadic nodes, unknown classes)
            if name not in seen and _is_link(value):
                slots.append({"name": name, "type": "*", "link": None})
        for index, slot in enumerate(slots):
            value = given.get(slot["name"])
            if isinstance(value, list) and _is_link(value):
                slot["link"] = self._link(value, node_id, index)
        if info is None:
            return slots, []
        return slots, _widgets_values(self._schema(str(node.get("class_type")), info)[1], given)


def _widgets_values(specs: tuple[WidgetSpec, ...], given: dict[str, Any]) -> list[Any]:
    """Positional widgets_values, with the client's hidden control ("fixed") and upload entries."""
    values: list[Any] = []
    for spec in specs:
        value = given.get(spec.name)
        if value is None or _is_link(value):
            value = spec.default if spec.has_default else None
        values.append(_unwrap(value))
        if spec.control:
            values.append("fixed")
        if spec.upload:
            values.append(UPLOAD_ENTRY)
    return values


def api_to_ui(prompt: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """A v0.4 UI workflow the ComfyUI frontend can load; `ui_to_api` turns it back into `prompt`.

    The round trip is exact for prompts that give every widget input (as the frontend writes them)
    and carry `_meta.title`; a missing widget input comes back as its schema default. Constant inputs
    of classes missing from `object_info` cannot be placed in positional widgets and are lost.
    """
    builder = _Builder(prompt, object_info)
    depth = _depths(prompt)
    column_y: dict[int, float] = {}
    nodes = []
    rank = {node_id: i for i, node_id in enumerate(sorted(prompt, key=depth.__getitem__))}
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        slots, widgets_values = builder.node_inputs(node_id, node)
        outputs = builder.outputs[node_id]
        height = 46 + 22 * max(len(slots), len(outputs)) + 26 * len(widgets_values)
        y = column_y.get(depth[node_id], 50.0)
        column_y[depth[node_id]] = y + height + ROW_GAP
        ui_node = {
            "id": _ui_id(node_id),
            "type": class_type,
            "pos": [50 + depth[node_id] * COLUMN_WIDTH, y],
            "size": [NODE_WIDTH, height],
            "flags": {},
            "order": rank[node_id],
            "mode": 0,
            "inputs": slots,
            "outputs": outputs,
            "properties": {"Node name for S&R": class_type},
            "widgets_values": widgets_values,
        }
        title = (node.get("_meta") or {}).get("title")
        if title:
            ui_node["title"] = title
        nodes.append(ui_node)
    for ui_node in nodes:
        for out in ui_node["outputs"]:
            out["links"] = out["links"] or None
    numeric = [n["id"] for n in nodes if isinstance(n["id"], int)]
    return {
        "last_node_id": max(numeric, default=len(nodes)),
        "last_link_id": len(builder.links),
        "nodes": nodes,
        "links": builder.links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
        "version": 0.4,
    }
