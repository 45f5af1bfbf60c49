"""One progress display for a distributed batch: items done, and each worker's item, node and step."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from diffgraph.workflow import describe_node
from engine.events import Event, Executing, Progress

WIDTH = 48  # characters of a worker's line description


class BatchDisplay:
    """Plain lines (logs, pipes): one when an item starts and one when it ends, tagged by worker."""

    def __init__(self, total: int, labels: dict[int, str], stream: TextIO | None = None, quiet: bool = False):
        self.total = total
        self.labels = labels
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.finished = 0
        self.lock = threading.Lock()

    def tag(self, index: int) -> str:
        """`[3/10 seed 5]` for an item."""
        return f"[{index + 1}/{self.total} {self.labels.get(index, '')}]".replace(" ]", "]")

    def say(self, text: str, always: bool = False) -> None:
        """One line (unless quiet; failures pass `always`)."""
        if always or not self.quiet:
            with self.lock:
                print(text, file=self.stream, flush=True)

    def start(self, worker: Any, item: Any) -> None:
        """An item began on a worker."""
        self.say(f"{self.tag(item.index)} {worker.name}: started")

    def event(self, worker: Any, item: Any, event: Event) -> None:
        """An engine event from a worker (plain lines stay at item level)."""

    def result(self, index: int, ok: bool, message: str) -> None:
        """An item ended."""
        with self.lock:
            self.finished += 1
        self.say(f"{self.tag(index)} {'done' if ok else 'FAILED'}: {message}", always=not ok)

    def close(self) -> None:
        """The batch is over."""


class RichBatchDisplay(BatchDisplay):
    """Rich bars on a terminal: the batch's items, then one line per worker with its node and step."""

    def __init__(self, total: int, labels: dict[int, str], workers: list[str], stream: TextIO | None = None):
        super().__init__(total, labels, stream)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.console = Console(file=self.stream)
        self.bars = Bars(
            TextColumn("{task.description:<" + str(WIDTH) + "}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.items = self.bars.add_task("items", total=total)
        self.workers = {name: self.bars.add_task(f"{name}: idle", total=1) for name in workers}
        self.prompts: dict[str, dict[str, Any]] = {}
        self.running: dict[int, str] = {}  # item index -> worker running it
        self.bars.start()

    def say(self, text: str, always: bool = False) -> None:
        """Print above the bars."""
        self.console.print(text, markup=False, highlight=False)

    def start(self, worker: Any, item: Any) -> None:
        """Show the item on its worker's line."""
        self.prompts[worker.name] = item.prompt
        self.running[item.index] = worker.name
        label = self.labels.get(item.index, "")
        self.bars.update(
            self.workers[worker.name], description=f"{worker.name}: {label}"[:WIDTH], completed=0, total=1
        )

    def event(self, worker: Any, item: Any, event: Event) -> None:
        """Node and step of the worker's current item."""
        task = self.workers.get(worker.name)
        if task is None:
            return
        label = self.labels.get(item.index, "")
        prompt = self.prompts.get(worker.name, {})
        if isinstance(event, Executing) and event.node is not None:
            node = describe_node(event.node, prompt.get(event.node, {}))
            self.bars.update(task, description=f"{worker.name}: {label} {node}"[:WIDTH], completed=0, total=1)
        elif isinstance(event, Progress):
            self.bars.update(task, completed=event.value, total=event.max)

    def result(self, index: int, ok: bool, message: str) -> None:
        """Advance the items bar and free the worker's line; failures print above it."""
        self.bars.advance(self.items)
        worker = self.running.pop(index, None)
        if worker is not None:
            self.bars.update(self.workers[worker], description=f"{worker}: idle", completed=0, total=1)
        if not ok:
            super().result(index, ok, message)
        else:
            with self.lock:
                self.finished += 1

    def close(self) -> None:
        """Stop drawing."""
        self.bars.stop()


def make_display(mode: str, total: int, labels: dict[int, str], workers: list[str]) -> BatchDisplay:
    """`auto`: rich bars on a terminal, plain lines otherwise; `plain`, `rich`, `none` force one."""
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() else "plain"
    if mode == "rich":
        return RichBatchDisplay(total, labels, workers)
    return BatchDisplay(total, labels, quiet=mode == "none")
