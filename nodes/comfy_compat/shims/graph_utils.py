"""ComfyUI's `comfy_execution.graph_utils` and `.graph`: links, GraphBuilder, ExecutionBlocker."""

from __future__ import annotations

from typing import Any

from engine import DynamicPrompt, ExecutionBlocker

__all__ = ["DynamicPrompt", "ExecutionBlocker", "GraphBuilder", "Node", "is_link"]


def is_link(value: Any) -> bool:
    """Whether value is a link: [node id (str), output slot (number)]."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
    )


class Node:
    """One node of a GraphBuilder graph."""

    def __init__(self, node_id: str, class_type: str, inputs: dict[str, Any]):
        self.id = node_id
        self.class_type = class_type
        self.inputs = dict(inputs)
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        """A link to output slot index."""
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        """Set (or, with None, remove) an input."""
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        """An input's value or None."""
        return self.inputs.get(key)

    def set_override_display_id(self, override_display_id: str) -> None:
        """Show this node's activity on another node in the client."""
        self.override_display_id = override_display_id

    def serialize(self) -> dict[str, Any]:
        """The API-format entry."""
        entry: dict[str, Any] = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            entry["override_display_id"] = self.override_display_id
        return entry


class GraphBuilder:
    """Builds an expansion graph whose node ids derive from the expanding node's id, so they never collide.

    The default prefix is "<expanding node id>.<call index>.<graph index>."; the adapter sets the first
    two before each call, and every builder made during the call takes the next graph index.
    """

    _prefix_root = ""
    _call_index = 0
    _graph_index = 0

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else GraphBuilder.alloc_prefix()
        self.nodes: dict[str, Node] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        """Prefix parts for builders made from now on."""
        cls._prefix_root, cls._call_index, cls._graph_index = prefix_root, call_index, graph_index

    @classmethod
    def alloc_prefix(
        cls, root: str | None = None, call_index: int | None = None, graph_index: int | None = None
    ) -> str:
        """A fresh id prefix."""
        root = cls._prefix_root if root is None else root
        call_index = cls._call_index if call_index is None else call_index
        graph_index = cls._graph_index if graph_index is None else graph_index
        GraphBuilder._graph_index += 1
        return f"{root}.{call_index}.{graph_index}."

    def node(self, class_type: str, id: str | None = None, **kwargs: Any) -> Node:  # noqa: A002 - protocol name
        """Add (or return the existing) node with this local id."""
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        full = self.prefix + id
        if full not in self.nodes:
            self.nodes[full] = Node(full, class_type, kwargs)
        return self.nodes[full]

    def lookup_node(self, id: str) -> Node | None:  # noqa: A002 - protocol name
        """The node with this local id, or None."""
        return self.nodes.get(self.prefix + id)

    def finalize(self) -> dict[str, Any]:
        """The graph in API format."""
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Point every input reading node_id's slot index at new_value (None removes those inputs)."""
        target = [self.prefix + node_id, index]
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and value[0] == target[0] and value[1] == index:
                    node.set_input(key, new_value)

    def remove_node(self, id: str) -> None:  # noqa: A002 - protocol name
        """Drop a node."""
        self.nodes.pop(self.prefix + id, None)
