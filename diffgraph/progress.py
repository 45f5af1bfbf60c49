"""Progress for headless runs: rich bars (items, nodes, sampler steps) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TextIO

from diffgraph.workflow import describe_node
from engine.events import Event, Executing, ExecutionCached, Progress

if TYPE_CHECKING:
    from rich.progress import TaskID


class PlainProgress:
    """Plain lines on a stream (logs, CI, pipes): one per node, a few per sampler, one per item."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.total = 0
        self.prefix = ""
        self.prompt: dict[str, Any] = {}

    def say(self, text: str, always: bool = False) -> None:
        """Write one line (unless quiet; errors pass `always`)."""
        if always or not self.quiet:
            print(f"{self.prefix}{text}", file=self.stream, flush=True)

    def status(self, text: str) -> AbstractContextManager[Any]:
        """A note shown while something slow and silent happens (plain lines stay quiet)."""
        return nullcontext()

    def start_batch(self, total: int) -> None:
        """A batch of `total` items begins."""
        self.total = total

    def start_item(self, label: str, index: int, prompt: dict[str, Any], nodes: int) -> None:
        """Item `index` (0-based) begins; `nodes` is how many nodes its outputs need."""
        self.prompt = prompt
        self.prefix = f"[{index + 1}/{self.total} {label}] " if self.total > 1 else ""

    def node_name(self, node_id: str) -> str:
        """`#3 KSampler` for a node of the current prompt."""
        node = self.prompt.get(node_id)
        return describe_node(node_id, node) if node else f"#{node_id}"

    def __call__(self, event: Event) -> None:
        if isinstance(event, ExecutionCached) and event.nodes:
            self.say(f"cached: {', '.join(self.node_name(n) for n in event.nodes)}")
        elif isinstance(event, Executing) and event.node is not None:
            self.say(f"running {self.node_name(event.node)}")
        elif isinstance(event, Progress):
            # A line per quarter keeps logs readable on long samplers.
            quarter = max(1, event.max // 4)
            if event.value == event.max or event.value % quarter == 0:
                self.say(f"{self.node_name(event.node)} step {event.value}/{event.max}")

    def end_item(self, ok: bool, message: str) -> None:
        """Item finished: `message` is its summary or its error."""
        self.say(("done: " if ok else "FAILED: ") + message, always=not ok)
        self.prefix = ""

    def close(self) -> None:
        """The batch is over."""


class RichProgress(PlainProgress):
    """Three rich bars on the terminal: items of the batch, nodes of the item, steps of the sampler."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=self.stream)
        self.bars = Progress(
            TextColumn("{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.lock = threading.Lock()
        # The bars exist from start_batch on (rich draws them in the order they are added).
        self.items: TaskID | None = None
        self.nodes: TaskID
        self.steps: TaskID
        self.node_total = 1
        self.done_nodes: set[str] = set()
        self.current: str | None = None

    def say(self, text: str, always: bool = False) -> None:
        """Print above the bars."""
        self.console.print(text, markup=False, highlight=False)

    def status(self, text: str) -> AbstractContextManager[Any]:
        """A spinner with `text` until the block ends (imports take seconds before the first node)."""
        return self.console.status(text)

    def start_batch(self, total: int) -> None:
        """Create the bars."""
        super().start_batch(total)
        self.bars.start()
        self.items = self.bars.add_task("items", total=total) if total > 1 else None
        self.nodes = self.bars.add_task("nodes", total=1)
        self.steps = self.bars.add_task("steps", total=1, visible=False)

    def start_item(self, label: str, index: int, prompt: dict[str, Any], nodes: int) -> None:
        """Reset the node and step bars for the next item."""
        super().start_item(label, index, prompt, nodes)
        self.done_nodes = set()
        self.current = None
        if self.items is not None:
            self.bars.update(self.items, description=f"item {index + 1}/{self.total}: {label}")
        self.node_total = max(nodes, 1)
        self.bars.reset(self.nodes, total=self.node_total, description="nodes")
        self.bars.update(self.steps, visible=False)

    def _finish_current(self) -> None:
        if self.current is not None and self.current not in self.done_nodes:
            self.done_nodes.add(self.current)
            self.bars.advance(self.nodes)

    def __call__(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, ExecutionCached):
                for node in event.nodes:
                    self.done_nodes.add(node)
                    self.bars.advance(self.nodes)
            elif isinstance(event, Executing) and event.node is not None:
                self._finish_current()
                self.current = event.node
                self.bars.update(self.nodes, description=self.node_name(event.node)[:32])
                self.bars.update(self.steps, visible=False)
            elif isinstance(event, Progress):
                self.bars.update(
                    self.steps,
                    completed=event.value,
                    total=event.max,
                    visible=True,
                    description=f"steps {self.node_name(event.node)}"[:32],
                )

    def end_item(self, ok: bool, message: str) -> None:
        """Complete the node bar and advance the item bar."""
        with self.lock:
            if ok:
                self._finish_current()
                self.bars.update(self.nodes, completed=self.node_total, description="nodes")
            if self.items is not None:
                self.bars.advance(self.items)
        super().end_item(ok, message)

    def close(self) -> None:
        """Stop drawing."""
        self.bars.stop()


def make_progress(mode: str, stream: TextIO | None = None) -> PlainProgress:
    """`auto` picks rich bars on a terminal and plain lines otherwise; `plain`, `rich`, `none` force one."""
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if stream.isatty() else "plain"
    if mode == "rich":
        return RichProgress(stream)
    return PlainProgress(stream, quiet=mode == "none")
