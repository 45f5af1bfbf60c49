"""The dynamic executor: lazy inputs, list mapping, subgraph expansion, blockers and async nodes.

Prompts whose nodes are all plain typed nodes take the executor's fixed-order path; a prompt with
any node needing these semantics runs here, on an event loop, following ComfyUI's observable
behaviour (the same events, in the same order, with the same results).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.context import CancelToken, RunContext
from engine.errors import Interrupted, NodeExecutionError
from engine.events import (
    EventSink,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionStart,
    ExecutionSuccess,
)
from engine.expansion import add_subgraph
from engine.flow import DynamicPrompt, ExecutionBlocker, SlotLists
from engine.formats.workflow import is_link, unwrap_constant
from engine.mapping import Returned, call_inputs, find_blocker, merge, normalise, resolve_subgraph
from engine.node import Node
from engine.outcome import ExecutionResult, ExecutorHost, failed, interrupted
from engine.scheduler import DependencyCycle, ExecutionList
from engine.schema import NodeSpec
from engine.signing import DynamicSigner


class Step(enum.Enum):
    """What became of a staged node."""

    DONE = "done"
    PENDING = "pending"


def format_input(value: Any) -> Any:
    """An input item as shown in execution_error (ComfyUI shows primitives, and text for the rest)."""
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)[:200]


class DynamicRun:
    """One prompt's execution with ComfyUI's dynamic semantics; see the module docstring."""

    def __init__(
        self, ex: ExecutorHost, prompt: dict[str, Any], outputs: list[str], prompt_id: str, **opts: Any
    ):
        self.ex = ex
        self.outputs = outputs
        self.prompt_id = prompt_id
        self.extra_data: dict[str, Any] = opts["extra_data"]
        self.sink: EventSink = opts["sink"]
        self.cancel: CancelToken = opts["cancel"]
        self.previews: bool = opts["previews"]
        self.dynprompt = DynamicPrompt(prompt)
        self.signer = DynamicSigner(ex, self.dynprompt, opts["forced"], opts.get("salt", ""))
        self.values: dict[str, tuple[list[Any], ...]] = {}
        self.cached_ui: dict[str, dict[str, Any] | None] = {}
        self.cached: list[str] = []
        self.pending_async: dict[str, list[tuple[RunContext, Any]]] = {}
        self.pending_subgraph: dict[str, list[tuple[bool, tuple[Any, ...]]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.states: dict[str, dict[str, Any]] = {}
        self.result = ExecutionResult(status="success")

    # -- bookkeeping -------------------------------------------------------------------------
    def spec(self, node_id: str) -> NodeSpec:
        """The spec of a submitted or added node."""
        return self.ex.registry.known_spec(self.dynprompt.get_node(node_id)["class_type"])

    def emit(self, event: Any, history: bool = False) -> None:
        if history:
            self.result.messages.append((event.type, event.data()))
        self.sink(event)

    def set_state(self, node_id: str, state: str, value: int = 0, maximum: int = 1) -> None:
        from engine.events import ProgressState, discard

        display = self.dynprompt.get_display_node_id(node_id)
        self.states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": display,
            "parent_node_id": self.dynprompt.get_parent_node_id(node_id),
            "real_node_id": self.dynprompt.get_real_node_id(node_id),
        }
        if self.sink is not discard:
            self.emit(ProgressState(prompt_id=self.prompt_id, nodes=dict(self.states)))

    def on_progress(self, node_id: str, value: int, maximum: int) -> None:
        from engine.events import Progress

        self.set_state(node_id, "running", value, maximum)
        self.emit(Progress(value=value, max=maximum, prompt_id=self.prompt_id, node=node_id))

    def is_cached(self, node_id: str) -> bool:
        """Whether node_id's outputs are known, loading them from the output cache on first ask."""
        if node_id in self.values:
            return True
        entry = self.signer.cached_entry(node_id)
        if entry is None or not isinstance(entry.outputs, SlotLists):
            return False
        self.values[node_id] = entry.outputs.slots
        self.cached_ui[node_id] = entry.ui
        if node_id in self.dynprompt.original:
            self.cached.append(node_id)
        return True

    def lazy_inputs(self, node_id: str) -> frozenset[str]:
        return self.spec(node_id).lazy_inputs

    def is_output(self, node_id: str) -> bool:
        return self.spec(node_id).node_cls.output_node

    def pick(self, ready: list[str]) -> str:
        """Outputs and async nodes first (results show sooner; async work starts earlier)."""
        for node_id in ready:
            if self.is_output(node_id) or self.spec(node_id).is_async:
                return node_id
        return ready[0]

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> ExecutionResult:
        """Execute the outputs and everything they need; never raises for node failures."""
        self.emit(ExecutionStart(prompt_id=self.prompt_id), history=True)
        for node_id in self.signer.closure(self.outputs):
            self.is_cached(node_id)
        self.result.cached = list(self.cached)
        self.emit(ExecutionCached(nodes=list(self.cached), prompt_id=self.prompt_id), history=True)
        elist = ExecutionList(self.dynprompt, self.is_cached, self.lazy_inputs)
        for node_id in self.outputs:
            elist.add_node(node_id)
        current: str | None = None
        try:
            while not elist.is_empty():
                current = await self._stage(elist)
                if await self.execute_node(current, elist) is Step.PENDING:
                    elist.unstage()
                else:
                    elist.complete()
        except Interrupted:
            return interrupted(self, current)
        except NodeExecutionError as exc:
            return failed(self, exc)
        except DependencyCycle as exc:
            blamed = exc.blamed or current or ""
            class_type = self.dynprompt.get_node(blamed)["class_type"] if blamed else ""
            error = NodeExecutionError(blamed, class_type, exc)
            error.message = f"dependency cycle: {exc}; an expansion linked nodes in a loop"
            return failed(self, error)
        finally:
            for task in self.tasks:
                task.cancel()
        self.emit(ExecutionSuccess(prompt_id=self.prompt_id), history=True)
        return self.result

    @property
    def prompt(self) -> dict[str, Any]:
        """Submitted and added nodes, for error reports naming a node's class."""
        return {**self.dynprompt.original, **self.dynprompt.ephemeral}

    async def _stage(self, elist: ExecutionList) -> str:
        while True:
            if self.cancel.cancelled:
                raise Interrupted()
            node_id = elist.stage(self.pick)
            if node_id is not None:
                return node_id
            elist.unblocked.clear()
            # Wake up regularly so an interrupt is seen while async nodes are in flight.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(elist.unblocked.wait(), timeout=0.05)

    async def execute_node(self, node_id: str, elist: ExecutionList) -> Step:
        """Run (or resume) one staged node; PENDING puts it back until its new dependencies finish."""
        spec = self.spec(node_id)
        if node_id in self.values:
            if spec.node_cls.output_node:
                self._publish(node_id, self.cached_ui.get(node_id), cached=True)
            return Step.DONE
        data: dict[str, list[Any]] = {}
        try:
            if node_id in self.pending_async:
                calls = self.pending_async.pop(node_id)
                done = [
                    (ctx, value.result() if isinstance(value, asyncio.Task) else value)
                    for ctx, value in calls
                ]
                return self._finish(node_id, spec, done, elist)
            if node_id in self.pending_subgraph:
                slots = resolve_subgraph(spec, self.pending_subgraph.pop(node_id), self.values)
                self._store(node_id, spec, slots, None)
                return Step.DONE
            return await self._start(node_id, spec, elist, data)
        except (Interrupted, NodeExecutionError):
            raise
        except Exception as exc:
            current = {name: [format_input(v) for v in items] for name, items in data.items()}
            real = self.dynprompt.get_real_node_id(node_id)
            raise NodeExecutionError(real, spec.class_type, exc, current_inputs=current) from exc

    async def _start(self, node_id: str, spec: NodeSpec, elist: ExecutionList, data: dict[str, Any]) -> Step:
        missing = self._input_data(node_id, spec, data)
        display = self.dynprompt.get_display_node_id(node_id)
        self.set_state(node_id, "running")
        self.emit(Executing(node=node_id, display_node=display, prompt_id=self.prompt_id))
        if spec.has_lazy_status:
            asked = await self._map(node_id, spec, data, lazy=True)
            needed = {
                name
                for _, names in asked
                if isinstance(names, list)
                for name in names
                if isinstance(name, str) and (name not in data or name in missing)
            }
            if needed:
                for name in sorted(needed):
                    elist.make_input_strong_link(node_id, name)
                return Step.PENDING
        calls = await self._map(node_id, spec, data, lazy=False)
        tasks = [value for _, value in calls if isinstance(value, asyncio.Task)]
        if tasks:
            self.pending_async[node_id] = calls
            unblock = elist.add_external_block(node_id)

            async def wait_then_unblock() -> None:
                await asyncio.gather(*tasks, return_exceptions=True)
                unblock()

            waiter = asyncio.create_task(wait_then_unblock())
            self.tasks.add(waiter)
            waiter.add_done_callback(self.tasks.discard)
            return Step.PENDING
        return self._finish(node_id, spec, calls, elist)

    def _input_data(self, node_id: str, spec: NodeSpec, data: dict[str, list[Any]]) -> set[str]:
        """Each input as a list of items; unevaluated (lazy) links become [None] and are returned."""
        missing: set[str] = set()
        for name, value in self.dynprompt.get_node(node_id).get("inputs", {}).items():
            if is_link(value) and name not in spec.raw_link_inputs:
                slots = self.values.get(value[0])
                if slots is None or int(value[1]) >= len(slots):
                    data[name] = [None]
                    missing.add(name)
                else:
                    data[name] = slots[int(value[1])]
            elif name in spec.input_names:
                data[name] = [unwrap_constant(value)]
        return missing

    def _context(self, node_id: str) -> RunContext:
        return RunContext(
            env=self.ex.env,
            prompt_id=self.prompt_id,
            node_id=node_id,
            display_node_id=self.dynprompt.get_display_node_id(node_id),
            prompt=self.dynprompt.original,
            extra_data=self.extra_data,
            linked_outputs=frozenset(out.field for out in self.spec(node_id).outputs),
            _cancel=self.cancel,
            _emit=self.sink,
            _on_progress=self.on_progress,
            _preview_enabled=self.previews,
            dynprompt=self.dynprompt,
        )

    def _blocked(self, node_id: str, spec: NodeSpec, blocker: ExecutionBlocker) -> ExecutionBlocker:
        """A blocker with a message is reported once, as an error that does not stop the prompt."""
        if blocker.message is None:
            return blocker
        self.emit(
            ExecutionError(
                prompt_id=self.prompt_id,
                node_id=node_id,
                node_type=spec.class_type,
                executed=list(self.result.executed),
                exception_message=f"Execution Blocked: {blocker.message}",
                exception_type="ExecutionBlocked",
                traceback=[],
                current_inputs={},
                current_outputs=[],
            )
        )
        return ExecutionBlocker(None)

    async def _map(
        self, node_id: str, spec: NodeSpec, data: dict[str, Any], lazy: bool
    ) -> list[tuple[Any, Any]]:
        """Call run (or check_lazy_status) once per list index; async calls may come back as tasks."""
        node = self.ex.instance(spec.node_cls)
        calls: list[tuple[Any, Any]] = []
        for kwargs, index in call_inputs(data, spec.node_cls.input_is_list):
            if self.cancel.cancelled:
                raise Interrupted()
            ctx = self._context(node_id)
            ctx.list_index = index
            blocker = find_blocker(kwargs, spec.node_cls.input_is_list)
            if blocker is not None:
                calls.append((ctx, blocker if lazy else self._blocked(node_id, spec, blocker)))
                continue
            if lazy:
                asked: Any = node.check_lazy_status(ctx, kwargs)
                calls.append((ctx, await asked if asyncio.iscoroutine(asked) else asked))
                continue
            inputs = _call_inputs(spec.node_cls, kwargs)
            started = time.perf_counter()
            value = node.run(ctx, inputs)
            if asyncio.iscoroutine(value):
                task = asyncio.ensure_future(value)
                await asyncio.sleep(0)  # let it start: one that needs no waiting finishes right here
                value = task.result() if task.done() else task
            self.result.timings[node_id] = (
                self.result.timings.get(node_id, 0.0) + time.perf_counter() - started
            )
            calls.append((ctx, value))
        return calls

    def _finish(
        self, node_id: str, spec: NodeSpec, calls: list[tuple[Any, Any]], elist: ExecutionList
    ) -> Step:
        returned = Returned()
        for ctx, value in calls:
            normalise(spec, value, ctx.ui, returned)
        ui = returned.ui()
        if returned.expands:
            self._publish(node_id, ui)
            pending = add_subgraph(self.ex, self.dynprompt, node_id, returned.entries, elist)
            self.pending_subgraph[node_id] = pending
            return Step.PENDING
        self._store(node_id, spec, merge(spec, [values for _, values in returned.entries]), ui)
        return Step.DONE

    def _publish(self, node_id: str, ui: dict[str, Any] | None, cached: bool = False) -> None:
        if ui is None and not cached:
            return
        if ui is not None:
            self.result.ui_outputs[node_id] = ui
        display = self.dynprompt.get_display_node_id(node_id)
        self.emit(Executed(node=node_id, display_node=display, output=ui, prompt_id=self.prompt_id))

    def _store(
        self, node_id: str, spec: NodeSpec, slots: tuple[list[Any], ...], ui: dict[str, Any] | None
    ) -> None:
        self._publish(node_id, ui)
        self.values[node_id] = slots
        fields: dict[str, Any] = {
            out.field: items[0] if len(items) == 1 and not out.is_list else items
            for out, items in zip(spec.outputs, slots, strict=False)
        }
        self.result.node_outputs[node_id] = spec.node_cls.Outputs.model_construct(None, **fields)
        self.result.executed.append(node_id)
        self.ex.cache.put(self.signer.key(node_id), SlotLists(slots), ui)
        self.set_state(node_id, "finished")


def run_dynamic(
    ex: ExecutorHost, prompt: dict[str, Any], outputs: list[str], prompt_id: str, **opts: Any
) -> Any:
    """Run a prompt on a fresh event loop (in a helper thread when this thread already runs one)."""
    run = DynamicRun(ex, prompt, outputs, prompt_id, **opts)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run.run())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run.run()).result()


def _call_inputs(node_cls: type[Node], kwargs: dict[str, Any]) -> Any:
    """What one call of a node receives: a plain dict, its Inputs model, or whole lists unvalidated.

    A whole-list node's widget declarations (default, bounds) describe the items, which validation
    already checked (constants) or which arrived typed on links; the lists themselves are not re-checked.
    """
    if node_cls.raw_io:
        return kwargs
    if node_cls.input_is_list:
        return node_cls.Inputs.model_construct(**kwargs)
    return node_cls.Inputs.model_validate(kwargs)
