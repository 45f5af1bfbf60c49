"""The worker of a pool: one Session per process, running one task at a time and queueing its events.

This class is plain Python; `pool.py` turns it into a Ray actor with a few threads, so the driver
can poll events and cancel while a task runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffgraph.api import Session
from diffgraph.distributed.outputs import FileRecord, ui_addresses
from diffgraph.workflow import Workflow
from engine import CancelToken
from engine.events import Event, Executed, ExecutionError, ExecutionInterrupted
from engine.registry import RegistryFactory

# How long a poll that found events keeps waiting for the task's end (a progress line's latency).
GATHER_S = 0.05


@dataclass
class Task:
    """One prompt to run on a worker. `outputs` None: validate there and run every valid output."""

    task_id: str
    prompt: dict[str, Any]
    prompt_id: str
    extra_data: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    force: bool = False
    previews: bool = False


@dataclass
class Outcome:
    """What a task produced on its worker (files travel with the `executed` events)."""

    task_id: str
    worker: str
    status: str  # "success" | "error" | "interrupted" | "invalid"
    prompt_id: str
    prompt: dict[str, Any] = field(default_factory=dict)
    ui: dict[str, Any] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: dict[str, Any] | None = None
    error_event: ExecutionError | ExecutionInterrupted | None = None  # the typed form, for the server
    node_errors: dict[str, Any] = field(default_factory=dict)
    messages: list[Any] = field(default_factory=list)
    model_loads: int = 0


@dataclass
class Record:
    """An engine event as it left the worker, with the files an `executed` event names."""

    event: Event
    files: list[FileRecord] = field(default_factory=list)


class SessionWorker:
    """A Session kept warm across tasks: its model store and output cache serve every item it runs."""

    def __init__(
        self,
        name: str,
        registry_factory: RegistryFactory | None,
        models_dir: str | None,
        input_dir: str,
        shared_staging: str | None = None,
        preview_size: int | None = None,
    ):
        self.name = name
        root = Path(shared_staging) if shared_staging else Path(tempfile.mkdtemp(prefix="diffgraph-worker-"))
        self.staging = root / name
        self.shared = shared_staging is not None
        self.session = Session(
            models_dir=models_dir,
            output_dir=self.staging / "idle",
            input_dir=input_dir,
            temp_dir=self.staging / "idle-temp",
            registry_factory=registry_factory,
        )
        if preview_size is not None:
            self.session.env.preview_size = preview_size
        self._run_lock = threading.Lock()  # one task at a time: the executor is not re-entrant
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self._running: str | None = None
        self._finished: deque[str] = deque(maxlen=64)  # recent task ids, so a late poll sees them done
        self._cancel = CancelToken()

    def info(self) -> dict[str, Any]:
        """Who this worker is: name, host, process id, model loads so far."""
        return {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(), "loads": self._loads()}

    def _loads(self) -> int:
        return int(getattr(self.session.env.models, "loads", 0) or 0)

    def run(self, task: Task) -> Outcome:
        """Run one task in folders of its own (so counters start at 1); events queue for `poll`."""
        with self._run_lock:
            with self._cond:
                self._running = task.task_id
                self._cancel.reset()
            try:
                return self._run(task)
            finally:
                with self._cond:
                    self._running = None
                    self._finished.append(task.task_id)
                    self._cond.notify_all()

    def _run(self, task: Task) -> Outcome:
        env = self.session.env
        env.output_dir = self.staging / task.task_id / "output"
        env.temp_dir = self.staging / task.task_id / "temp"
        env.output_dir.mkdir(parents=True, exist_ok=True)
        env.temp_dir.mkdir(parents=True, exist_ok=True)
        loads = self._loads()
        started = time.perf_counter()
        outcome = Outcome(task.task_id, self.name, "invalid", task.prompt_id, prompt=task.prompt)
        try:
            prompt, outputs = task.prompt, task.outputs
            if outputs is None:
                validation = self.session.validate(Workflow(task.prompt))
                if not validation.ok:
                    outcome.error = validation.error
                    outcome.node_errors = dict(validation.node_errors or {})
                    return outcome
                prompt, outputs = validation.prompt, list(validation.outputs)
                outcome.node_errors = dict(validation.node_errors or {})
            result = self.session.executor.execute(
                prompt,
                prompt_id=task.prompt_id,
                outputs=outputs,
                extra_data=task.extra_data,
                sink=lambda event: self._emit(task, event),
                cancel=self._cancel,
                force=task.force,
                previews=task.previews,
            )
        finally:
            if not self.shared:
                shutil.rmtree(self.staging / task.task_id, ignore_errors=True)
        outcome.status = result.status
        outcome.prompt = prompt
        outcome.ui = dict(result.ui_outputs or {})
        outcome.executed, outcome.cached = list(result.executed), list(result.cached)
        outcome.timings = dict(result.timings or {})
        outcome.error, outcome.error_event = result.error_data(), result.error
        outcome.messages = [list(m) for m in result.messages]
        outcome.seconds = time.perf_counter() - started
        outcome.model_loads = self._loads() - loads
        return outcome

    def _emit(self, task: Task, event: Event) -> None:
        files = self._files(event.output) if isinstance(event, Executed) else []
        with self._cond:
            self._records.append(Record(event, files))
            self._cond.notify_all()

    def _files(self, ui: dict[str, Any] | None) -> list[FileRecord]:
        """The files a UI output names: read now (the task folder goes away), or left on a shared path."""
        roots = {"output": self.session.env.output_dir, "temp": self.session.env.temp_dir}
        records = []
        for kind, subfolder, filename in ui_addresses(ui):
            path = roots[kind] / subfolder / filename
            if not path.is_file():
                continue  # a cached output node replaying the UI of a file committed long ago
            if self.shared:
                records.append(FileRecord(kind, subfolder, filename, path=str(path)))
            else:
                records.append(FileRecord(kind, subfolder, filename, data=path.read_bytes()))
        return records

    def poll(self, task_id: str, timeout: float, gather: float = GATHER_S) -> tuple[list[Record], bool]:
        """(events queued so far, whether task_id has finished); waits up to timeout for either.

        Once an event is there it waits up to `gather` longer for the task to finish, so a short
        task costs the driver one round trip instead of one per event.
        """
        with self._cond:
            if not self._records and task_id not in self._finished:
                self._cond.wait(timeout)
            deadline = time.monotonic() + gather
            while task_id not in self._finished and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            records, self._records = self._records, []
            return records, task_id in self._finished

    def cancel(self, task_id: str | None = None) -> bool:
        """Interrupt the running task (only if it is task_id, when given); True when one was."""
        with self._cond:
            if self._running is None or (task_id is not None and task_id != self._running):
                return False
            self._cancel.cancel()
            return True

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """ComfyUI's /free on this worker: forget cached outputs and/or unload models."""
        if free_memory:
            self.session.clear_cache()
        if (unload_models or free_memory) and self.session.env.models is not None:
            self.session.env.models.unload_all()
