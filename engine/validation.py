"""Whole-prompt validation before anything runs, reporting every problem in ComfyUI's node_errors shape."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.input_checks import Edges, NodeChecker, reason, types_compatible
from engine.registry import Registry

if TYPE_CHECKING:
    import networkx as nx

log = logging.getLogger(__name__)

__all__ = [
    "ValidationResult",
    "copy_prompt",
    "reason",
    "select_outputs",
    "types_compatible",
    "validate_prompt",
]


@dataclass
class ValidationResult:
    """The outcome: runnable outputs, per-node errors, and the prompt with constants coerced."""

    ok: bool
    error: dict[str, Any] | None
    node_errors: dict[str, dict[str, Any]]
    outputs: list[str]
    prompt: dict[str, Any]
    edges: Edges = field(default_factory=dict)

    @property
    def graph(self) -> nx.DiGraph:
        """The validated nodes and their well-formed links as a networkx DiGraph.

        Built on demand: validation itself walks plain dicts, since it runs on every submission
        and networkx's per-edge bookkeeping was most of its cost.
        """
        return _to_digraph(self.edges)


def _to_digraph(edges: Edges) -> nx.DiGraph:
    import networkx as nx  # only for cycles and callers of .graph: every CLI start would pay ~0.3 s

    graph = nx.DiGraph()
    graph.add_nodes_from(edges)
    graph.add_edges_from((src, dst) for src, consumers in edges.items() for dst in consumers)
    return graph


def _descendants(edges: Edges, roots: set[str]) -> set[str]:
    """Every node downstream of roots (roots excluded unless on a cycle)."""
    seen: set[str] = set()
    stack = [dst for root in roots for dst in edges.get(root, ())]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def _has_cycle(edges: Edges) -> bool:
    """Kahn's algorithm: a DAG drains completely."""
    waiting = dict.fromkeys(edges, 0)
    for consumers in edges.values():
        for dst in consumers:
            waiting[dst] += 1
    ready = [node for node, count in waiting.items() if count == 0]
    drained = 0
    while ready:
        node = ready.pop()
        drained += 1
        for dst in edges[node]:
            waiting[dst] -= 1
            if waiting[dst] == 0:
                ready.append(dst)
    return drained != len(waiting)


def _top(code: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": code, "message": message, "details": details, "extra_info": {}}


def _structure_errors(prompt: Any, registry: Registry) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Problems that make a prompt unreadable: not an object, missing class_type, unknown nodes."""
    if not isinstance(prompt, dict):
        return _top("invalid_prompt", "The prompt must be a JSON object of nodes keyed by id."), {}
    node_errors: dict[str, Any] = {}
    first: dict[str, Any] | None = None
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            err = _top(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        elif node["class_type"] not in registry:
            err = _top(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'",
            )
        elif not isinstance(node.get("inputs", {}), dict):
            err = _top(
                "invalid_prompt",
                f"Node #{node_id} has 'inputs' that is not an object.",
                f"Node ID '#{node_id}'",
            )
        else:
            continue
        first = first or err
        node_errors[str(node_id)] = {
            "errors": [err],
            "dependent_outputs": [],
            "class_type": node.get("class_type") if isinstance(node, dict) else None,
        }
    return first, node_errors


def _cycle_errors(validator: NodeChecker) -> None:
    if not _has_cycle(validator.edges):
        return
    import networkx as nx

    for cycle in nx.simple_cycles(_to_digraph(validator.edges)):
        path = " -> ".join([*cycle, cycle[0]])
        for node_id in cycle:
            validator.valid[node_id] = False
            validator.errors.setdefault(node_id, []).append(
                reason(
                    "exception_during_validation",
                    "Dependency cycle detected",
                    f"{path}: remove one of these links so the graph has no loop",
                    cycle=cycle,
                )
            )


def copy_prompt(prompt: dict[str, Any]) -> dict[str, Any]:
    """Copy nodes and their input dicts (validation rewrites coerced values); values are shared."""
    copied = {}
    for node_id, node in prompt.items():
        node = dict(node)
        if isinstance(node.get("inputs"), dict):
            node["inputs"] = dict(node["inputs"])
        copied[str(node_id)] = node
    return copied


def select_outputs(prompt: dict[str, Any], registry: Registry, targets: list[str] | None) -> list[str]:
    """Output nodes to run: every output_node, narrowed by partial_execution_targets when given."""
    outputs = [
        node_id
        for node_id, node in prompt.items()
        if (cls := registry.get(node["class_type"])) is not None and cls.output_node
    ]
    if targets is not None:
        wanted = {str(t) for t in targets}
        outputs = [o for o in outputs if o in wanted]
    return outputs


def validate_prompt(
    prompt: Any, registry: Registry, *, targets: list[str] | None = None, env: Any = None
) -> ValidationResult:
    """Validate a whole API prompt; ok when at least one output (and its ancestry) is valid."""
    error, node_errors = _structure_errors(prompt, registry)
    if error is not None:
        return ValidationResult(False, error, node_errors, [], prompt if isinstance(prompt, dict) else {})
    prompt = copy_prompt(prompt)
    outputs = select_outputs(prompt, registry, targets)
    if not outputs:
        return ValidationResult(False, _top("prompt_no_outputs", "Prompt has no outputs"), {}, [], prompt)
    validator = NodeChecker(prompt, registry, env)
    for output in outputs:
        validator.validate(output)
    _cycle_errors(validator)
    invalid = {node_id for node_id, ok in validator.valid.items() if not ok}
    tainted = set(invalid)
    tainted |= _descendants(validator.edges, invalid)  # downstream of an invalid node cannot run
    good = [o for o in outputs if o not in tainted]
    for node_id, errors in validator.errors.items():
        downstream = _descendants(validator.edges, {node_id}) | {node_id}
        node_errors[node_id] = {
            "errors": errors,
            "dependent_outputs": [o for o in outputs if o in downstream],
            "class_type": prompt[node_id]["class_type"],
        }
    if not good:
        details = "\n".join(
            f"{err['message']}: {err['details']}" for entry in node_errors.values() for err in entry["errors"]
        )
        error = _top("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return ValidationResult(False, error, node_errors, [], prompt, validator.edges)
    return ValidationResult(True, None, node_errors, good, prompt, validator.edges)
