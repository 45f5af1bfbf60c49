"""Which node of a dynamic run may go next: a topological dissolve that can grow while it runs.

Nodes join when an output needs them; a node stays blocked until every node it strongly depends on
is done. A node may return to the pending set after being staged (it asked for lazy inputs, expanded
into a subgraph, or awaits async work), with new dependencies added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.flow import DynamicPrompt
from engine.formats.workflow import is_link
from engine.graph import natural_key

IsCached = Callable[[str], bool]
LazyInputs = Callable[[str], frozenset[str]]


class DependencyCycle(Exception):
    """No pending node can run: the remaining ones wait on each other."""

    def __init__(self, message: str, blamed: str | None = None):
        super().__init__(message)
        self.blamed = blamed  # the submitted node whose expansion made the loop, when known


class ExecutionList:
    """Pending nodes, what blocks each, and the node currently staged."""

    def __init__(self, dynprompt: DynamicPrompt, is_cached: IsCached, lazy_inputs: LazyInputs):
        self.dynprompt = dynprompt
        self.is_cached = is_cached
        self.lazy_inputs = lazy_inputs
        self.pending: dict[str, None] = {}  # insertion-ordered set
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, set[str]] = {}  # node -> nodes waiting on it
        self.external_blocks = 0
        self.unblocked = asyncio.Event()
        self.staged: str | None = None

    def add_node(self, root: str) -> None:
        """Add root and every uncached node its non-lazy inputs need."""
        stack = [root]
        links: list[tuple[str, str]] = []
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = None
            self.block_count[node_id] = 0
            self.blocking[node_id] = set()
            if self.is_cached(node_id):
                continue  # an output served from the cache needs nothing upstream
            lazy = self.lazy_inputs(node_id)
            for name, value in self.dynprompt.get_node(node_id).get("inputs", {}).items():
                if is_link(value) and name not in lazy and not self.is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], node_id))
        for src, dst in links:
            self.add_strong_link(src, dst)

    def add_strong_link(self, src: str, dst: str) -> None:
        """Make dst wait for src (adding src when it is not cached)."""
        if self.is_cached(src):
            return
        self.add_node(src)
        if dst not in self.blocking[src]:
            self.blocking[src].add(dst)
            self.block_count[dst] += 1

    def make_input_strong_link(self, node_id: str, input_name: str) -> None:
        """A lazy input was asked for: its source must run before node_id runs again."""
        value = self.dynprompt.get_node(node_id).get("inputs", {}).get(input_name)
        if not is_link(value):
            raise ValueError(f"node {node_id} asked for input {input_name!r}, which is not linked")
        self.add_strong_link(value[0], node_id)

    def add_external_block(self, node_id: str) -> Callable[[], None]:
        """Hold node_id back until the returned function is called (async work in flight)."""
        self.external_blocks += 1
        self.block_count[node_id] += 1

        def unblock() -> None:
            self.external_blocks -= 1
            self.block_count[node_id] -= 1
            self.unblocked.set()

        return unblock

    def is_empty(self) -> bool:
        """True when every node is done."""
        return not self.pending

    def ready(self) -> list[str]:
        """Pending nodes nothing blocks."""
        return [n for n in self.pending if self.block_count[n] == 0]

    def stage(self, pick: Callable[[list[str]], str]) -> str | None:
        """Stage a ready node (None while only external blocks hold the rest); cycles raise."""
        available = self.ready()
        if not available:
            if self.external_blocks > 0:
                return None
            waiting = sorted(self.pending, key=natural_key)
            # Static cycles fail validation, so an added node is to blame: report its display node.
            added = [n for n in waiting if self.dynprompt.get_display_node_id(n) != n]
            blamed = self.dynprompt.get_display_node_id(added[0]) if added else waiting[0]
            raise DependencyCycle(f"nodes {', '.join(waiting)} wait on each other", blamed)
        self.staged = pick(available)
        return self.staged

    def unstage(self) -> None:
        """The staged node goes back to pending (it waits on new dependencies)."""
        self.staged = None

    def complete(self) -> None:
        """The staged node is done: release what it blocked."""
        node_id = self.staged
        assert node_id is not None
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self.block_count[blocked] -= 1
        self.staged = None
