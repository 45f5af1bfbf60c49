"""Running a batch on a pool: cache-aware placement, retries after worker deaths, clean cancellation."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffgraph.distributed import placement
from diffgraph.distributed.actor import Outcome, Record, Task
from diffgraph.distributed.outputs import FileRecord, OutputCommitter, rename_ui, ui_addresses
from diffgraph.distributed.pool import Pool, RemoteWorker, WorkerLost
from engine import CancelToken
from engine.events import Event

log = logging.getLogger(__name__)
# An item that killed this many workers is poisoned: reported failed, never tried again.
POISON_DEATHS = 2


@dataclass(eq=False)
class BatchItem:
    """One prompt of a batch, with the shared signatures placement matches against warm workers."""

    index: int
    prompt: dict[str, Any]
    extra_data: dict[str, Any] = field(default_factory=dict)
    key: frozenset[str] = frozenset()
    deaths: list[str] = field(default_factory=list)  # workers that died while running it


@dataclass
class ItemResult:
    """How an item ended: status, the worker that ran it, its committed files and renamed UI."""

    index: int
    status: str  # success | error | interrupted | invalid | poisoned | not_run
    worker: str | None = None
    outcome: Outcome | None = None
    files: dict[str, list[Path]] = field(default_factory=dict)
    ui: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    deaths: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every output ran."""
        return self.status == "success"


EventHook = Callable[[RemoteWorker, BatchItem, Event], None]
ResultHook = Callable[[ItemResult], None]


class Batch:
    """Feeds items to the pool's workers, one driver thread per worker, until done or cancelled."""

    def __init__(
        self,
        pool: Pool,
        items: list[BatchItem],
        committer: OutputCommitter,
        *,
        force: bool = False,
        on_event: EventHook | None = None,
        on_start: Callable[[RemoteWorker, BatchItem], None] | None = None,
        on_result: ResultHook | None = None,
    ):
        self.pool = pool
        self.committer = committer
        self.force = force
        self.on_event = on_event
        self.on_start = on_start
        self.on_result = on_result
        keys = placement.shared_keys(item.prompt for item in items)
        for item, key in zip(items, keys, strict=True):
            item.key = key
        self.queue = list(items)
        self.total = len(items)
        self.results: dict[int, ItemResult] = {}
        self.held: dict[str, set[str]] = {w.name: set() for w in pool.workers}
        self.running: dict[str, BatchItem] = {}
        self._cancels: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._done = threading.Event()
        self.cancelled = False
        self._threads: list[threading.Thread] = []

    def start(self) -> Batch:
        """Start one driver thread per live worker."""
        if not self.queue or not self.pool.alive:
            self._finish_if_idle()
        for worker in self.pool.alive:
            thread = threading.Thread(
                target=self._serve, args=(worker,), name=f"batch-{worker.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once every item has a result (or the batch was cancelled and running items ended)."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Stop: queued items are not started, running ones are interrupted on their workers."""
        with self._lock:
            self.cancelled = True
            for token in self._cancels.values():
                token.cancel()
            self._changed.notify_all()
        self._finish_if_idle()

    def ordered_results(self) -> list[ItemResult]:
        """Every item's result by index; items never started are `not_run`."""
        with self._lock:
            results = dict(self.results)
            for item in [*self.queue, *self.running.values()]:
                results.setdefault(item.index, ItemResult(item.index, "not_run", deaths=list(item.deaths)))
        return [results[i] for i in sorted(results)]

    def _take(self, worker: RemoteWorker) -> BatchItem | None:
        with self._lock:
            # With nothing queued, stay while others run: a worker death puts its item back.
            while not self.cancelled and not self.queue and self.running:
                self._changed.wait()
            if self.cancelled or not self.queue:
                return None
            # Only the head of the queue is considered, so a take stays cheap on huge batches.
            window = self.queue[: placement.WINDOW]
            positions = list(range(len(window)))
            if len(self.pool.alive) > 1:
                # An item that killed this worker before goes to another one when it can.
                positions = [p for p in positions if worker.name not in window[p].deaths] or positions
            others = set().union(*(held for name, held in self.held.items() if name != worker.name))
            keys = [window[p].key for p in positions]
            chosen = self.queue.pop(positions[placement.choose(keys, self.held[worker.name], others)])
            self.running[worker.name] = chosen
            self._cancels[worker.name] = CancelToken()
            self.held[worker.name] |= chosen.key
            return chosen

    def _serve(self, worker: RemoteWorker) -> None:
        while True:
            item = self._take(worker)
            if item is None:
                break
            if self.on_start is not None:
                self.on_start(worker, item)
            if not self._run(worker, item):
                break
        self._finish_if_idle()

    def _run(self, worker: RemoteWorker, item: BatchItem) -> bool:
        """Run one item on worker; False when the worker is gone for good."""
        task = Task(
            task_id=f"{item.index}-{uuid.uuid4().hex[:8]}",
            prompt=item.prompt,
            prompt_id=str(uuid.uuid4()),
            extra_data=item.extra_data,
            force=self.force,
        )
        files: list[FileRecord] = []

        def on_record(record: Record) -> None:
            files.extend(record.files)
            if self.on_event is not None:
                self.on_event(worker, item, record.event)

        try:
            outcome = worker.execute(task, on_record, self._cancels[worker.name])
        except WorkerLost as exc:
            log.warning("%s; item %d goes back to the queue", exc.message, item.index)
            self._lost(worker, item)
            return worker.recover()
        except Exception as exc:  # an engine bug on the worker: this item fails, the batch goes on
            log.exception("item %d failed on worker %s", item.index, worker.name)
            outcome = Outcome(task.task_id, worker.name, "error", task.prompt_id, prompt=item.prompt)
            outcome.error = {"type": "worker_error", "message": f"worker {worker.name}: {exc}"}
        try:
            result = self._commit(worker, item, outcome, files)
        except (OSError, ValueError) as exc:  # a file that cannot be written here fails its item only
            log.exception("item %d: its files could not be committed", item.index)
            error = {"type": "output_failed", "message": f"files of item {item.index}: {exc}"}
            result = ItemResult(
                item.index, "error", worker.name, outcome, error=error, deaths=list(item.deaths)
            )
        self._record(result)
        return True

    def _lost(self, worker: RemoteWorker, item: BatchItem) -> None:
        with self._lock:
            self.running.pop(worker.name, None)
            self.held[worker.name] = set()  # a restarted worker starts cold
            item.deaths.append(worker.name)
            self._changed.notify_all()
            if len(item.deaths) < POISON_DEATHS:
                self.queue.insert(0, item)
                return
        message = f"item killed {len(item.deaths)} workers ({', '.join(item.deaths)}); not tried again"
        self._record(
            ItemResult(
                item.index,
                "poisoned",
                error={"type": "poisoned_item", "message": message},
                deaths=item.deaths,
            )
        )

    def _commit(
        self, worker: RemoteWorker, item: BatchItem, outcome: Outcome, files: list[FileRecord]
    ) -> ItemResult:
        placed = self.committer.commit(files)
        names = {address: path.name for address, path in placed.items()}
        ui = {node: rename_ui(node_ui, names) or {} for node, node_ui in outcome.ui.items()}
        node_files = {
            node: [placed[a] for a in ui_addresses(node_ui) if a in placed]
            for node, node_ui in outcome.ui.items()
        }
        status = outcome.status
        return ItemResult(
            item.index, status, worker.name, outcome, node_files, ui, outcome.error, deaths=list(item.deaths)
        )

    def _record(self, result: ItemResult) -> None:
        with self._lock:
            self.results[result.index] = result
            for name, running in list(self.running.items()):
                if running.index == result.index:
                    del self.running[name]
            self._changed.notify_all()
        if self.on_result is not None:
            self.on_result(result)
        self._finish_if_idle()

    def _finish_if_idle(self) -> None:
        with self._lock:
            idle = not self.running and (self.cancelled or not self.queue or not self.pool.alive)
            if idle and (self.cancelled or len(self.results) == self.total or not self.pool.alive):
                self._done.set()
