"""Several prompts at once: one worker thread per executor slot, all claiming from the same queue.

A slot is anything with `Executor.execute`'s signature and a `cache` with `clear()`; remote
backends (a Ray pool) provide slots that run elsewhere and raise ExecutorLost when their process
dies. The queue stays the source of truth: a worker claims a prompt only when its slot is free
and ready, and a lost prompt goes back to pending.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from engine.context import Environment
from engine.registry import Registry
from server.hub import Bridge, Hub
from server.store import JobStore
from server.worker import IDLE_POLL_S, Worker

log = logging.getLogger(__name__)


class SlotWorker(Worker):
    """A Worker over one slot; it claims nothing while its slot is not ready (restarting, gone)."""

    def _loop(self) -> None:
        while not self._stopping.is_set():
            ready = getattr(self.executor, "ready", None)
            if ready is not None and not ready():
                self._stopping.wait(IDLE_POLL_S)
                continue
            self._apply_free()
            job = self.store.wait_next(IDLE_POLL_S)
            if job is None:
                continue
            if self._stopping.is_set():
                self.store.requeue(job.id)
                return
            self._run(job)


class WorkerPool:
    """The server's worker when prompts run on several slots: same calls as Worker, for all of them."""

    def __init__(
        self,
        registry: Registry,
        env: Environment,
        store: JobStore,
        hub: Hub,
        bridge: Bridge,
        slots: list[Any],
    ):
        self.workers = [
            SlotWorker(
                registry,
                # Each slot frees its own models: /free reaches every worker through its slot.
                dataclasses.replace(env, models=getattr(slot, "models", None)),
                store,
                hub,
                bridge,
                executor=slot,
            )
            for slot in slots
        ]

    @property
    def running(self) -> list[str]:
        """Ids of the prompts running now."""
        return [w.current for w in self.workers if w.current is not None]

    @property
    def current(self) -> str | None:
        """One running prompt id (the first), or None."""
        running = self.running
        return running[0] if running else None

    def start(self) -> None:
        """Start every worker thread."""
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt running prompts (they go back to the queue) and end the threads."""
        for worker in self.workers:
            worker._stopping.set()
            worker.cancel.cancel()
        for worker in self.workers:
            worker.stop(timeout)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Cancel prompt_id where it runs, or every running prompt when None; True if any was."""
        results = [worker.interrupt(prompt_id) for worker in self.workers]
        return any(results)

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        """ComfyUI's /free, applied by each worker between its prompts."""
        for worker in self.workers:
            worker.request_free(unload_models, free_memory)
