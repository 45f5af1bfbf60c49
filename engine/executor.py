"""Runs a validated prompt: cache lookups, node dispatch in a fixed order, events, error wrapping."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.cache import OutputCache, node_signature
from engine.context import CancelToken, Environment, RunContext
from engine.errors import Interrupted, NodeExecutionError
from engine.events import (
    Event,
    EventSink,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
    ProgressState,
    discard,
)
from engine.formats.workflow import unwrap_constant
from engine.graph import Links, descendants_closure, execution_order, linked_inputs, sources_of
from engine.node import Node, NodeOutputs
from engine.outcome import ExecutionResult, failed, format_input, interrupted
from engine.precision import cache_salt, requested_precision
from engine.registry import Registry
from engine.schema import NodeSpec

log = logging.getLogger(__name__)

PLAN_MEMO_SIZE = 16  # recent distinct prompts whose plans are kept


@dataclass
class Plan:
    """A prompt's needed nodes in order, their cache signatures and which output slots are consumed."""

    order: list[str]
    signatures: dict[str, str]
    consumers: dict[str, set[int]]
    deps: dict[str, list[str]]
    links: Links
    pure: bool  # no fingerprint hook and nothing uncacheable: the same prompt text plans the same
    dynamic: bool = False  # some node needs lazy inputs, lists, expansion or async: engine.dynamic runs it


class _Run:
    """State of one prompt execution; keeps Executor.execute short."""

    def __init__(
        self,
        executor: Executor,
        plan: Plan,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        sink: EventSink,
        cancel: CancelToken,
        previews: bool,
    ):
        self.ex = executor
        self.plan = plan
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.sink = sink
        self.cancel = cancel
        self.previews = previews
        self.result = ExecutionResult(status="success")
        self.values: dict[str, NodeOutputs | None] = {}
        self.states: dict[str, dict[str, Any]] = {}

    def emit(self, event: Event, history: bool = False) -> None:
        if history:
            self.result.messages.append((event.type, event.data()))
        self.sink(event)

    def set_state(self, node_id: str, state: str, value: int = 0, maximum: int = 1) -> None:
        # Entries are replaced, never mutated, so the shallow snapshot below stays consistent.
        self.states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        if self.sink is not discard:
            self.emit(ProgressState(prompt_id=self.prompt_id, nodes=dict(self.states)))

    def on_progress(self, node_id: str, value: int, maximum: int) -> None:
        self.set_state(node_id, "running", value, maximum)
        self.emit(Progress(value=value, max=maximum, prompt_id=self.prompt_id, node=node_id))

    def build_inputs(self, spec: NodeSpec, node_id: str) -> dict[str, Any]:
        raw = self.prompt[node_id].get("inputs", {})
        links = self.plan.links[node_id]
        kwargs: dict[str, Any] = {}
        for inp in spec.inputs:
            if inp.name not in raw:
                continue  # pydantic fills the default
            value = raw[inp.name]
            if inp.name in links:
                src, slot = links[inp.name]
                src_spec = self.ex.registry.spec(self.prompt[src]["class_type"])
                assert src_spec is not None
                kwargs[inp.name] = getattr(self.values[src], src_spec.outputs[slot].field)
            else:
                kwargs[inp.name] = unwrap_constant(value)
        return kwargs

    def linked_outputs(self, node_id: str, spec: NodeSpec) -> frozenset[str]:
        slots = self.plan.consumers.get(node_id, set())
        return frozenset(spec.outputs[s].field for s in slots if s < len(spec.outputs))

    def run_node(self, node_id: str) -> None:
        class_type = self.prompt[node_id]["class_type"]
        spec = self.ex.registry.spec(class_type)
        assert spec is not None
        if self.cancel.cancelled:
            raise Interrupted()
        self.set_state(node_id, "running")
        self.emit(Executing(node=node_id, display_node=node_id, prompt_id=self.prompt_id))
        kwargs = self.build_inputs(spec, node_id)
        ctx = RunContext(
            env=self.ex.env,
            prompt_id=self.prompt_id,
            node_id=node_id,
            display_node_id=node_id,
            prompt=self.prompt,
            extra_data=self.extra_data,
            linked_outputs=self.linked_outputs(node_id, spec),
            _cancel=self.cancel,
            _emit=self.sink,
            _on_progress=self.on_progress,
            _preview_enabled=self.previews,
        )
        started = time.perf_counter()
        try:
            inputs = spec.node_cls.Inputs.model_validate(kwargs)
            outputs = self.ex.instance(spec.node_cls).run(ctx, inputs)
            if spec.outputs and not isinstance(outputs, spec.node_cls.Outputs):
                raise TypeError(f"{class_type}.run returned {type(outputs).__name__}, not its Outputs model")
        except Interrupted:
            raise
        except Exception as exc:
            current = {name: [format_input(v)] for name, v in kwargs.items()}
            raise NodeExecutionError(node_id, class_type, exc, current_inputs=current) from exc
        self.result.timings[node_id] = time.perf_counter() - started
        self.values[node_id] = outputs
        self.result.node_outputs[node_id] = outputs
        self.result.executed.append(node_id)
        if ctx.ui is not None:
            self.result.ui_outputs[node_id] = ctx.ui
            self.emit(Executed(node=node_id, display_node=node_id, output=ctx.ui, prompt_id=self.prompt_id))
        self.ex.cache.put(self.plan.signatures[node_id], outputs, ctx.ui)
        self.set_state(node_id, "finished")


class Executor:
    """Executes prompts against a registry, one at a time, with an output cache kept across prompts."""

    def __init__(self, registry: Registry, env: Environment, cache: OutputCache | None = None):
        self.registry = registry
        self.env = env
        self.cache = cache if cache is not None else OutputCache()
        self._instances: dict[type[Node], Node] = {}
        self._plans: OrderedDict[str, Plan] = OrderedDict()

    def instance(self, node_cls: type[Node]) -> Node:
        """Nodes are stateless, so one instance per class serves every call."""
        node = self._instances.get(node_cls)
        if node is None:
            node = self._instances[node_cls] = node_cls()
        return node

    def _fingerprint(self, spec: NodeSpec, inputs: dict[str, Any], links: dict[str, tuple[str, int]]) -> Any:
        constants = {k: (None if k in links else unwrap_constant(v)) for k, v in inputs.items()}
        try:
            return spec.node_cls.fingerprint(constants, self.env)
        except Exception:  # a failing fingerprint means "unknown": re-run rather than trust the cache
            log.exception("fingerprint of %s failed; the node will re-run", spec.class_type)
            return math.nan

    def _planned(self, prompt: dict[str, Any], outputs: list[str], salt: str = "") -> Plan:
        """plan(), memoised on the prompt's exact text for prompts whose signatures are pure.

        Resubmitting a workflow unchanged (or re-queueing it from history) is common, and planning
        is most of its cost. A plan depends only on the prompt text and the registry's classes,
        which never change for a registered class_type, unless a node has a fingerprint hook or is
        uncacheable: those plans are rebuilt every time, so IS_CHANGED is asked on every run.
        """
        try:
            key = json.dumps([prompt, outputs, salt], separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError):  # a Python-API prompt holding non-JSON values: no memo
            return self.plan(prompt, outputs, salt)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        plan = self.plan(prompt, outputs, salt)
        if plan.pure:
            self._plans[key] = plan
            while len(self._plans) > PLAN_MEMO_SIZE:
                self._plans.popitem(last=False)
        return plan

    def plan(self, prompt: dict[str, Any], outputs: Iterable[str], salt: str = "") -> Plan:
        """Order the outputs' ancestry, sign every node and record which output slots are consumed.

        `salt` (see engine.precision.cache_salt) goes into every signature, so results computed at
        another precision are never taken from the cache.
        """
        links = linked_inputs(prompt, outputs)
        deps = sources_of(links)
        order = execution_order(deps)
        signatures: dict[str, str] = {}
        consumers: dict[str, set[int]] = {}
        specs: dict[str, NodeSpec] = {}
        pure = True
        dynamic = False
        for node_id in order:
            node = prompt[node_id]
            class_type = node["class_type"]
            spec = specs.get(class_type)
            if spec is None:
                spec = specs[class_type] = self.registry.known_spec(class_type)
            inputs = node.get("inputs", {})
            mine = links[node_id]
            for src, slot in mine.values():
                consumers.setdefault(src, set()).add(slot)
            fingerprint = self._fingerprint(spec, inputs, mine) if spec.has_fingerprint else None
            if not spec.node_cls.cacheable:
                fingerprint = math.nan
            pure = pure and not spec.has_fingerprint and spec.node_cls.cacheable
            dynamic = dynamic or spec.is_dynamic
            signatures[node_id] = node_signature(
                class_type,
                spec.node_cls.version,
                inputs,
                mine,
                signatures,
                fingerprint=fingerprint,
                node_id=node_id if spec.signs_node_id else None,
                salt=salt,
            )
        return Plan(order, signatures, consumers, deps, links, pure, dynamic)

    def _needed(
        self, plan: Plan, prompt: dict[str, Any], outputs: list[str], forced: set[str]
    ) -> tuple[set[str], set[str]]:
        """Nodes that must run, and cache hits; upstream of a hit nothing runs."""
        to_run: set[str] = set()
        hits: set[str] = set()
        stack = list(outputs)
        seen: set[str] = set()
        while stack:
            node_id = stack.pop()
            if node_id in seen:
                continue
            seen.add(node_id)
            if node_id not in forced and plan.signatures[node_id] in self.cache:
                hits.add(node_id)
                continue
            to_run.add(node_id)
            stack.extend(plan.deps[node_id])
        return to_run, hits

    def execute(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str,
        outputs: list[str],
        extra_data: dict[str, Any] | None = None,
        sink: EventSink = discard,
        cancel: CancelToken | None = None,
        force: bool | Iterable[str] = False,
        previews: bool = True,
    ) -> ExecutionResult:
        """Run a validated prompt's outputs; never raises for node failures (see result.status).

        Raises PrecisionError when extra_data names an unknown precision (servers check it on submit).
        """
        salt = cache_salt(requested_precision(extra_data, self.env.models))
        plan = self._planned(prompt, outputs, salt)
        order = plan.order
        if plan.dynamic:
            from engine.dynamic import run_dynamic  # only prompts with dynamic nodes pay for asyncio

            forced_ids = True if force is True else descendants_closure(plan.deps, force or ())
            return run_dynamic(  # type: ignore[no-any-return]
                self,
                prompt,
                outputs,
                prompt_id,
                extra_data=extra_data or {},
                sink=sink,
                cancel=cancel or CancelToken(),
                previews=previews,
                forced=forced_ids,
                salt=salt,
            )
        run = _Run(self, plan, prompt, prompt_id, extra_data or {}, sink, cancel or CancelToken(), previews)
        forced = set(order) if force is True else descendants_closure(plan.deps, force or ())
        to_run, hits = self._needed(plan, prompt, outputs, forced)
        run.emit(ExecutionStart(prompt_id=prompt_id), history=True)
        cached = [n for n in order if n in hits]
        run.result.cached = cached
        # Clients show every node whose output is in the cache, also those behind a cached output.
        listed = [n for n in order if n in hits or (n not in to_run and plan.signatures[n] in self.cache)]
        run.emit(ExecutionCached(nodes=listed, prompt_id=prompt_id), history=True)
        for node_id in cached:
            entry = self.cache.get(plan.signatures[node_id])
            assert entry is not None
            run.values[node_id] = entry.outputs
            run.result.node_outputs[node_id] = entry.outputs
        current: str | None = None
        try:
            for node_id in order:
                current = node_id
                if node_id in to_run:
                    run.run_node(node_id)
                elif node_id in cached and node_id in outputs:
                    self._replay_ui(run, node_id)
        except Interrupted:
            return interrupted(run, current)
        except NodeExecutionError as exc:
            return failed(run, exc)
        run.emit(ExecutionSuccess(prompt_id=prompt_id), history=True)
        return run.result

    def _replay_ui(self, run: _Run, node_id: str) -> None:
        entry = self.cache.get(run.plan.signatures[node_id])
        ui = entry.ui if entry else None
        if ui is not None:
            run.result.ui_outputs[node_id] = ui
        run.emit(Executed(node=node_id, display_node=node_id, output=ui, prompt_id=run.prompt_id))
