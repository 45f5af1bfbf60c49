"""Subgraph expansion: checking the nodes a node returned and splicing them into the running prompt."""

from __future__ import annotations

from typing import Any

from engine.errors import UserFacingError
from engine.flow import DynamicPrompt
from engine.formats.workflow import is_link
from engine.input_checks import NodeChecker
from engine.outcome import ExecutorHost
from engine.scheduler import ExecutionList


class ExpansionError(UserFacingError):
    """A node expanded into a subgraph that cannot run."""

    code = "invalid_expansion"


def check_subgraph(ex: ExecutorHost, dynprompt: DynamicPrompt, node_id: str, graph: dict[str, Any]) -> None:
    """Refuse duplicate ids, unknown classes and invalid inputs before any added node runs."""
    registry = ex.registry
    for new_id, node in graph.items():
        if dynprompt.has_node(new_id):
            raise ExpansionError(
                f"node {node_id} expanded into node id {new_id!r}, which exists already; "
                "derive added ids from the expanding node's id (GraphBuilder does)"
            )
        if not isinstance(node, dict) or node.get("class_type") not in registry:
            kind = node.get("class_type") if isinstance(node, dict) else node
            raise ExpansionError(f"node {node_id} expanded into node {new_id!r} of unknown type {kind!r}")
    view = {**dynprompt.original, **dynprompt.ephemeral, **graph}
    checker = NodeChecker(view, registry, ex.env)
    problems = []
    for new_id in graph:
        graph[new_id].setdefault("inputs", {})
        if not checker._check_node(new_id):
            for err in checker.errors[new_id]:
                problems.append(
                    f"#{new_id} ({graph[new_id]['class_type']}): {err['message']}: {err['details']}"
                )
    if problems:
        raise ExpansionError(f"node {node_id} expanded into an invalid subgraph: " + "; ".join(problems))


def add_subgraph(
    ex: ExecutorHost,
    dynprompt: DynamicPrompt,
    node_id: str,
    entries: list[tuple[dict[str, Any] | None, tuple[Any, ...]]],
    elist: ExecutionList,
) -> list[tuple[bool, tuple[Any, ...]]]:
    """Add each call's subgraph under node_id; node_id then waits for the nodes its results link to."""
    pending: list[tuple[bool, tuple[Any, ...]]] = []
    new_outputs: list[str] = []
    result_sources: list[str] = []
    for graph, values in entries:
        if graph is None:
            pending.append((False, values))
            continue
        check_subgraph(ex, dynprompt, node_id, graph)
        for new_id, node in graph.items():
            display = node.get("override_display_id") or node_id
            dynprompt.add_ephemeral_node(new_id, node, node_id, display)
            if ex.registry.known_spec(node["class_type"]).node_cls.output_node:
                new_outputs.append(new_id)
        result_sources.extend(value[0] for value in values if is_link(value))
        pending.append((True, values))
    for new_id in new_outputs:
        elist.add_node(new_id)
    for src in result_sources:
        elist.add_strong_link(src, node_id)
    return pending
