"""Values that steer execution: blockers, subgraph expansions, raw node results, and the dynamic prompt."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.errors import DiffgraphError


@dataclass(frozen=True)
class ExecutionBlocker:
    """An output value that stops every node consuming it from running.

    With a message, the first node it blocks reports an execution_error carrying it (the prompt goes
    on); without one, the consumers are skipped silently and pass the blocker further downstream.
    """

    message: str | None = None


@dataclass
class NodeResult:
    """What a node may return instead of its Outputs model: values, UI, or a subgraph to run.

    `values` holds one entry per output slot. With `expand` (an API-format graph), entries may be
    links `[node_id, slot]` into that graph: the node's outputs are then those nodes' outputs.
    `block` replaces every output with an ExecutionBlocker carrying that message.
    """

    values: tuple[Any, ...] | None = None
    ui: dict[str, Any] | None = None
    expand: dict[str, dict[str, Any]] | None = None
    block: str | None = None


@dataclass(frozen=True, eq=False)
class SlotLists:
    """A dynamic run's result for one node: for each output slot, the list of its items."""

    slots: tuple[list[Any], ...]

    def items(self) -> Iterator[Any]:
        """Every item of every slot (the cache sizes them)."""
        for slot in self.slots:
            yield from slot


class NodeNotFound(DiffgraphError):
    """A node id that is neither in the prompt nor added by an expansion."""

    code = "node_not_found"


@dataclass
class DynamicPrompt:
    """The submitted prompt plus the nodes expansions added while it runs (ComfyUI's DYNPROMPT).

    Added ("ephemeral") nodes remember the node that created them (their parent) and the node the
    client should show their progress on (their display node, normally the parent).
    """

    original: dict[str, Any]
    ephemeral: dict[str, dict[str, Any]] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)
    display: dict[str, str] = field(default_factory=dict)

    def get_node(self, node_id: str) -> dict[str, Any]:
        """The node's API entry ({class_type, inputs})."""
        node = self.ephemeral.get(node_id)
        if node is None:
            node = self.original.get(node_id)
        if node is None:
            raise NodeNotFound(f"node {node_id!r} is not in the prompt")
        return node

    def has_node(self, node_id: str) -> bool:
        """Whether the id names a submitted or an added node."""
        return node_id in self.ephemeral or node_id in self.original

    def add_ephemeral_node(self, node_id: str, node: dict[str, Any], parent_id: str, display_id: str) -> None:
        """Add a node created by parent_id's expansion."""
        self.ephemeral[node_id] = node
        self.parents[node_id] = parent_id
        self.display[node_id] = display_id

    def get_real_node_id(self, node_id: str) -> str:
        """The submitted node an added node descends from (itself for submitted nodes)."""
        while node_id in self.parents:
            node_id = self.parents[node_id]
        return node_id

    def get_parent_node_id(self, node_id: str) -> str | None:
        """The node whose expansion added this one, or None."""
        return self.parents.get(node_id)

    def get_display_node_id(self, node_id: str) -> str:
        """The submitted node the client shows this node's activity on."""
        while node_id in self.display and self.display[node_id] != node_id:
            node_id = self.display[node_id]
        return node_id

    def all_node_ids(self) -> set[str]:
        """Every submitted and added node id."""
        return set(self.original) | set(self.ephemeral)

    def get_original_prompt(self) -> dict[str, Any]:
        """The prompt as submitted."""
        return self.original

    def __iter__(self) -> Iterator[str]:
        yield from self.original
        yield from self.ephemeral
