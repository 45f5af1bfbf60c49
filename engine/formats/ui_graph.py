"""Litegraph UI workflows as nested scopes: link shapes normalised, subgraph definitions and instances indexed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.errors import WorkflowFormatError
from engine.formats.ui_schema import check_definition, check_node

# Ids the frontend gives the boundary nodes inside every subgraph definition.
SUBGRAPH_INPUT_ID = "-10"
SUBGRAPH_OUTPUT_ID = "-20"
# Frontend-only node types: they never reach the backend (litegraph `isVirtualNode`).
VIRTUAL_TYPES = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})
MODE_NEVER = 2  # muted
MODE_BYPASS = 4


class Link(NamedTuple):
    """One litegraph link, whatever shape (v0.4 array or v1 object) it was saved in."""

    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str


def _parse_link(raw: Any, where: str) -> tuple[str, Link]:
    try:
        if isinstance(raw, dict):
            link_id, origin, o_slot = raw["id"], raw["origin_id"], raw["origin_slot"]
            target, t_slot, io_type = raw["target_id"], raw["target_slot"], raw.get("type", "*")
        else:
            link_id, origin, o_slot, target, t_slot, io_type = raw[:6]
        return str(link_id), Link(str(origin), int(o_slot), str(target), int(t_slot), str(io_type))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise WorkflowFormatError(
            f"{where}: link {raw!r} is neither [id, origin, slot, target, slot, type] nor an object "
            "with id/origin_id/origin_slot/target_id/target_slot",
            code="invalid_ui_workflow",
        ) from exc


def parse_links(raw_links: Any, where: str) -> dict[str, Link]:
    """Link id -> Link for a graph's `links` list (entries may be arrays or objects)."""
    if raw_links is None:
        return {}
    if not isinstance(raw_links, list):
        raise WorkflowFormatError(f"{where}: `links` must be a list", code="invalid_ui_workflow")
    links = {}
    for raw in raw_links:
        if raw is None:  # old files keep holes where links were deleted
            continue
        link_id, link = _parse_link(raw, where)
        links[link_id] = link
    return links


def parse_nodes(raw_nodes: Any, where: str) -> dict[str, dict[str, Any]]:
    """Node id (as str) -> node dict, checking every node has an id and a type."""
    if not isinstance(raw_nodes, list):
        raise WorkflowFormatError(f"{where}: `nodes` must be a list", code="invalid_ui_workflow")
    nodes = {}
    for node in raw_nodes:
        node = check_node(node, where)
        nodes[str(node["id"])] = node
    return nodes


def collect_definitions(ui: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Subgraph id -> definition, from `definitions.subgraphs` at the root and inside definitions."""
    found: dict[str, dict[str, Any]] = {}
    pending = [ui]
    while pending:
        holder = pending.pop()
        definitions = holder.get("definitions") or {}
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
        if not isinstance(subgraphs, list | None):
            raise WorkflowFormatError("definitions.subgraphs must be a list", code="invalid_ui_workflow")
        for sub in subgraphs or ():
            sub = check_definition(sub)
            if sub["id"] not in found:
                found[sub["id"]] = sub
                pending.append(sub)
    return found


@dataclass
class Scope:
    """One graph level: the root workflow, or one subgraph instance's copy of its definition."""

    nodes: dict[str, dict[str, Any]]
    links: dict[str, Link]
    definitions: dict[str, dict[str, Any]]
    prefix: str = ""  # execution-id prefix, "" at the root, "12:" inside instance 12
    parent: Scope | None = None
    instance: dict[str, Any] | None = None  # the instance node, living in `parent`
    definition: dict[str, Any] | None = None
    _children: dict[str, Scope] = field(default_factory=dict)
    _outputs: dict[int, Link] | None = None

    @classmethod
    def root(cls, ui: dict[str, Any]) -> Scope:
        """The top-level scope of a UI workflow."""
        return cls(
            nodes=parse_nodes(ui.get("nodes"), "workflow"),
            links=parse_links(ui.get("links"), "workflow"),
            definitions=collect_definitions(ui),
        )

    def exec_id(self, node: dict[str, Any]) -> str:
        """The API-format id of a node of this scope: instance path and node id joined by colons."""
        return f"{self.prefix}{node['id']}"

    def is_instance(self, node: dict[str, Any]) -> bool:
        """True when the node instantiates a subgraph definition."""
        return node["type"] in self.definitions

    def child(self, instance: dict[str, Any]) -> Scope:
        """The scope inside a subgraph instance node of this scope (built once)."""
        key = str(instance["id"])
        scope = self._children.get(key)
        if scope is None:
            definition = self.definitions[instance["type"]]
            where = (
                f"subgraph {definition.get('name', definition['id'])!r} (instance {self.exec_id(instance)})"
            )
            if self._contains_definition(definition["id"]):
                raise WorkflowFormatError(f"{where} contains itself", code="invalid_ui_workflow")
            scope = Scope(
                nodes=parse_nodes(definition.get("nodes", []), where),
                links=parse_links(definition.get("links"), where),
                definitions=self.definitions,
                prefix=f"{self.exec_id(instance)}:",
                parent=self,
                instance=instance,
                definition=definition,
            )
            self._children[key] = scope
        return scope

    def _contains_definition(self, definition_id: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if scope.definition is not None and scope.definition["id"] == definition_id:
                return True
            scope = scope.parent
        return False

    def output_link(self, slot: int) -> Link | None:
        """The inner link feeding this subgraph's output `slot` (into the output node), if any."""
        if self._outputs is None:
            self._outputs = {
                link.target_slot: link for link in self.links.values() if link.target_id == SUBGRAPH_OUTPUT_ID
            }
        return self._outputs.get(slot)

    def execution_order(self) -> list[dict[str, Any]]:
        """This graph's nodes in litegraph's execution order, the order the client serialises them in.

        Kahn's algorithm: nodes without linked inputs first, in file order; each node's output links are
        followed slot by slot in ascending link id, a target joining the queue once all its links are
        seen. Nodes left over (loops) follow, integer ids ascending as a JS object lists them.
        """
        remaining: dict[str, int] = {}
        queue: list[dict[str, Any]] = []
        for node_id, node in self.nodes.items():
            linked = sum(1 for slot in node.get("inputs") or [] if str(slot.get("link")) in self.links)
            if linked:
                remaining[node_id] = linked
            else:
                queue.append(node)
        outgoing: dict[tuple[str, int], list[tuple[tuple[int, int | str], Link]]] = {}
        for link_id, link in self.links.items():
            outgoing.setdefault((link.origin_id, link.origin_slot), []).append((_link_order(link_id), link))
        order: list[dict[str, Any]] = []
        while queue:
            node = queue.pop(0)
            order.append(node)
            node_id = str(node["id"])
            for slot in range(len(node.get("outputs") or [])):
                for _, link in sorted(outgoing.get((node_id, slot), []), key=lambda item: item[0]):
                    if link.target_id not in remaining:
                        continue
                    remaining[link.target_id] -= 1
                    if remaining[link.target_id] == 0:
                        queue.append(self.nodes[link.target_id])
        left = [node_id for node_id, count in remaining.items() if count > 0]
        ints = sorted((n for n in left if n.isdigit()), key=int)
        return order + [self.nodes[n] for n in ints + [n for n in left if not n.isdigit()]]

    def walk(self) -> Iterator[tuple[Scope, dict[str, Any]]]:
        """Every node that may run (muted/bypassed ones skipped), depth first through subgraph instances,
        in the order the client serialises them: the root by execution order, subgraph nodes as listed."""
        nodes = self.execution_order() if self.parent is None else list(self.nodes.values())
        for node in nodes:
            if node.get("mode", 0) in (MODE_NEVER, MODE_BYPASS) or node["type"] in VIRTUAL_TYPES:
                continue
            if self.is_instance(node):
                yield from self.child(node).walk()
            else:
                yield self, node


def _link_order(link_id: str) -> tuple[int, int | str]:
    """Link ids sort as numbers (the client's are integers); anything else after them."""
    return (0, int(link_id)) if link_id.lstrip("-").isdigit() else (1, link_id)
