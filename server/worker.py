"""The one worker thread that runs queued prompts and bridges engine events to the websocket hub."""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from engine.context import LATENT_STREAM_KEY, CancelToken, Environment
from engine.events import Event, Executed, Executing, PreviewImage, StepLatent
from engine.executor import ExecutionResult, Executor
from engine.registry import Registry
from server.hub import Bridge, Hub
from server.store import Job, JobStore
from server.streams import FrameSender

log = logging.getLogger(__name__)
IDLE_POLL_S = 1.0


# Events between nodes: queued previews and latents are sent before these (never within a node's steps).
NODE_BOUNDARIES = frozenset(
    {"executing", "executed", "execution_success", "execution_error", "execution_interrupted"}
)


class ExecutorLost(Exception):
    """The process that ran the prompt went away (a remote worker died): the prompt is queued again."""


class Worker:
    """Pops jobs from the store in priority order and executes them, one at a time."""

    def __init__(
        self,
        registry: Registry,
        env: Environment,
        store: JobStore,
        hub: Hub,
        bridge: Bridge,
        *,
        executor: Executor | None = None,
        tracebacks: bool = True,
    ):
        self.registry = registry
        self.env = env
        self.store = store
        self.hub = hub
        self.bridge = bridge
        self.frames = FrameSender(hub, bridge)
        self._previews_requested = False
        # Tracebacks name server paths and code: shown to a local user, kept in the log for remote ones.
        self.tracebacks = tracebacks
        self.executor = executor or Executor(registry, env)
        self.cancel = CancelToken()
        self._lock = threading.Lock()
        self._current: str | None = None
        self._stopping = threading.Event()
        self._free_models = False
        self._free_memory = False
        self._thread = threading.Thread(target=self._loop, name="diffgraph-worker", daemon=True)

    @property
    def current(self) -> str | None:
        """The id of the prompt being executed, or None."""
        return self._current

    def start(self) -> None:
        """Start the worker thread and the preview/latent sender."""
        self.frames.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the running prompt (it goes back to the queue) and end the thread."""
        self._stopping.set()
        self.cancel.cancel()
        self.store.wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the worker did not stop within %.0f s; a node is ignoring cancellation", timeout)
        self.frames.stop()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Cancel the running prompt (only if it is prompt_id, when given); True if one was cancelled."""
        with self._lock:
            if self._current is None or (prompt_id is not None and prompt_id != self._current):
                return False
            self.cancel.cancel()
            return True

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        """ComfyUI's /free: applied between prompts, never during one."""
        with self._lock:
            self._free_models |= unload_models
            self._free_memory |= free_memory
        if self._current is None:
            self.store.wake()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._apply_free()
                job = self.store.wait_next(IDLE_POLL_S)
            except (sqlite3.Error, OSError) as exc:
                # A store that cannot be read right now (disk full, locked): the queue waits, the thread lives.
                log.error("cannot read the next prompt from %s: %s; retrying", self.store.path, exc)
                self._stopping.wait(IDLE_POLL_S)
                continue
            if job is None:
                continue
            if self._stopping.is_set():
                self.store.requeue(job.id)
                return
            try:
                self._run(job)
            except Exception:  # the worker must outlive any single prompt, whatever went wrong
                log.exception("prompt %s could not be completed", job.id)
                self._record(job, "error", None)

    def _apply_free(self) -> None:
        with self._lock:
            unload, free = self._free_models, self._free_memory
            self._free_models = self._free_memory = False
        if free:
            self.executor.cache.clear()
        if (unload or free) and self.env.models is not None:
            self.env.models.unload_all()

    def _run(self, job: Job) -> None:
        with self._lock:
            self.cancel.reset()
            self._current = job.id
        self.bridge.call(self.hub.start, job.id, job.client_id)
        extra = dict(job.extra_data)
        method = extra.get("preview_method")
        # An explicit method asks for previews even from a client without preview metadata support.
        self._previews_requested = method not in (None, "", "none", "default")
        previews = method != "none" and self.hub.wants_previews(job.client_id, self._previews_requested)
        extra[LATENT_STREAM_KEY] = self.hub.wants_latents(job.client_id)
        try:
            result = self.executor.execute(
                job.prompt,
                prompt_id=job.id,
                outputs=job.outputs_to_execute,
                extra_data=extra,
                sink=lambda event: self._on_event(job, event),
                cancel=self.cancel,
                previews=previews,
            )
        except ExecutorLost as exc:
            log.warning("prompt %s goes back to the queue: %s", job.id, exc)
            with self._lock:
                self._current = None
            self.store.requeue(job.id)
            self.bridge.call(self.hub.stop, job.id)
            return
        except Exception as exc:  # the executor reports node failures itself; this is an engine bug
            log.exception("executor failed on prompt %s", job.id)
            result = ExecutionResult.crashed(job.id, exc)
            self.bridge.call(
                self.hub.emit, "execution_error", self._shown(result.error_data()), job.client_id
            )
        self._record(job, result.status, result)

    def _record(self, job: Job, status: str, result: ExecutionResult | None) -> None:
        """Store the outcome (or, when that fails, at least that the prompt failed) and announce it."""
        with self._lock:
            self._current = None
        try:
            if self._stopping.is_set() and status == "interrupted":
                self.store.requeue(job.id)  # shutdown, not the user, stopped it: run it again next start
            elif result is None:
                self.store.fail(job.id, "diffgraph failed while running this prompt; see the server log")
            else:
                self._store_result(job, result)
        except (sqlite3.Error, ValueError) as exc:
            log.error("the outcome of prompt %s could not be stored in %s: %s", job.id, self.store.path, exc)
            self._fail_quietly(job, f"the outcome of this prompt could not be stored: {exc}")
        finally:
            self.bridge.call(self.hub.stop, job.id)
            if job.client_id:
                done = {"node": None, "prompt_id": job.id}
                self.bridge.call(self.hub.emit, "executing", done, job.client_id)

    def _fail_quietly(self, job: Job, message: str) -> None:
        """Record a short failure so the prompt does not stay "running"; if even that fails, log it."""
        try:
            self.store.fail(job.id, message)
        except (sqlite3.Error, ValueError) as exc:
            # Still shown as running until the next start, whose crash recovery settles it.
            log.error("prompt %s could not be marked failed either: %s", job.id, exc)

    def _store_result(self, job: Job, result: ExecutionResult) -> None:
        error = self._shown(result.error_data())
        messages = [[m[0], self._shown(m[1])] for m in result.messages]
        try:
            self.store.finish(job.id, result.status, result.ui_outputs, messages, error)
        except ValueError as exc:  # a node produced UI output that cannot be stored (NaN, bad text)
            log.error("prompt %s finished but its results cannot be stored: %s", job.id, exc)
            self.store.fail(job.id, f"the prompt ran but its results could not be stored: {exc}")

    def _on_event(self, job: Job, event: Event) -> None:
        """Executor sink, on the worker thread: persist what must survive a crash, then hand to the hub."""
        if isinstance(event, PreviewImage):
            self.frames.preview(job.client_id, event, self._previews_requested)
            return
        if isinstance(event, StepLatent):
            self.frames.latent(job.client_id, event)
            return
        if event.type in NODE_BOUNDARIES:
            self.frames.flush()  # a node's previews go out before the next node starts, as in ComfyUI
        try:
            if isinstance(event, Executing) and event.node is not None:
                self.store.set_current_node(job.id, event.node)
            elif isinstance(event, Executed) and event.output is not None:
                self.store.add_output(job.id, event.node, event.output)
        except (sqlite3.Error, ValueError) as exc:
            # Only the crash breadcrumbs are lost; the run and its final record go on.
            log.warning("prompt %s: progress could not be stored: %s", job.id, exc)
        self.bridge.call(self.hub.emit, event.type, self._shown(event.data()), job.client_id)

    def _shown(self, data: Any) -> Any:
        """An event payload as clients may see it: without traceback lines unless they are allowed."""
        if self.tracebacks or not isinstance(data, dict) or not data.get("traceback"):
            return data
        return {**data, "traceback": []}
