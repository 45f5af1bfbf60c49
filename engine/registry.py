"""An explicitly built registry of node classes; node packs are found through an entry-point group."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from engine.errors import DiffgraphError
from engine.model_paths import ModelPaths
from engine.node import Node
from engine.schema import ChoiceProvider, NodeSpec, no_choices, node_spec, object_info

ENTRY_POINT_GROUP = "diffgraph.nodes"


@dataclass
class PackInfo:
    """One node pack the composition root tried to load: where from, what it added, or why it failed."""

    name: str
    path: Path
    kind: str  # "comfyui-v1", "comfyui-v3", ...
    nodes: list[str] = field(default_factory=list)
    web_dir: Path | None = None
    # HTTP routes the pack adds: (method, path in Starlette syntax, async endpoint(request) -> response).
    routes: list[tuple[str, str, Callable[..., Any]]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the server lists."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "nodes": list(self.nodes),
            "web_directory": str(self.web_dir) if self.web_dir else None,
            "routes": [f"{method} {path}" for method, path, _ in self.routes],
            "error": self.error,
            "loaded": self.error is None,
        }


class Registry:
    """Maps class_type to node class. Built by a composition root (CLI, server entry point, tests)."""

    def __init__(self, nodes: Iterable[type[Node]] = (), choices: ChoiceProvider = no_choices):
        self._nodes: dict[str, type[Node]] = {}
        self.choices = choices
        # Packs loaded from folders the user named (custom nodes), successes and failures alike.
        self.packs: list[PackInfo] = []
        for node_cls in nodes:
            self.register(node_cls)

    def register(self, node_cls: type[Node]) -> type[Node]:
        """Add a node class; its schema is derived (and checked) now, not at first use."""
        class_type = getattr(node_cls, "class_type", None)
        if not class_type:
            raise DiffgraphError(f"{node_cls.__qualname__} has no class_type", code="bad_node_class")
        if class_type in self._nodes and self._nodes[class_type] is not node_cls:
            raise DiffgraphError(f"class_type {class_type!r} is registered twice", code="duplicate_node")
        node_spec(node_cls)
        self._nodes[class_type] = node_cls
        return node_cls

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Load every installed node pack: each entry point is a callable taking this registry."""
        for ep in entry_points(group=group):
            ep.load()(self)
        return self

    def get(self, class_type: str) -> type[Node] | None:
        """The node class for class_type, or None."""
        return self._nodes.get(class_type)

    def spec(self, class_type: str) -> NodeSpec | None:
        """The NodeSpec for class_type, or None."""
        node_cls = self._nodes.get(class_type)
        return node_spec(node_cls) if node_cls else None

    def known_spec(self, class_type: str) -> NodeSpec:
        """The NodeSpec of a class_type validation already found registered (KeyError otherwise)."""
        return node_spec(self._nodes[class_type])

    def __contains__(self, class_type: object) -> bool:
        return class_type in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def object_info(self) -> dict[str, Any]:
        """ComfyUI's `/object_info` for every registered node."""
        return {name: object_info(cls, self.choices) for name, cls in self._nodes.items()}

    def node_info(self, class_type: str) -> dict[str, Any]:
        """ComfyUI's `/object_info/{class}` entry for one node."""
        return object_info(self._nodes[class_type], self.choices)


# Builds the node registry for a models folder and an input folder: what a composition root hands the
# server, the CLI and the Python API (tests hand in stub-node registries).
RegistryFactory = Callable[[ModelPaths, Path], Registry]
