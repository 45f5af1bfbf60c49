"""The execution graph: which nodes a prompt needs, in a deterministic dependency order.

Validation builds a networkx DiGraph for its checks; the per-submission hot path here uses plain
dicts, because planning runs on every queued prompt and networkx's per-edge cost dominates there.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable
from typing import Any

from engine.workflow import is_link

Dependencies = dict[str, list[str]]  # node id -> ids of the nodes it reads from


def natural_key(node_id: str) -> tuple[Any, ...]:
    """Sort "2" before "10" and "5:3" after "5": numeric parts compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", node_id))


def dependencies(prompt: dict[str, Any], outputs: Iterable[str]) -> Dependencies:
    """The outputs and all their ancestors, each mapped to its link sources."""
    deps: Dependencies = {}
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in deps:
            continue
        sources = [str(v[0]) for v in prompt[node_id].get("inputs", {}).values() if is_link(v)]
        deps[node_id] = sources
        stack.extend(sources)
    return deps


def execution_order(deps: Dependencies) -> list[str]:
    """Topological order, ties broken by natural node-id order, so runs are reproducible."""
    consumers: dict[str, list[str]] = {node: [] for node in deps}
    waiting = {node: len(set(sources)) for node, sources in deps.items()}
    for node, sources in deps.items():
        for src in set(sources):
            consumers[src].append(node)
    ready = [(natural_key(n), n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for consumer in consumers[node]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, (natural_key(consumer), consumer))
    return order


def descendants_closure(deps: Dependencies, roots: Iterable[str]) -> set[str]:
    """The roots and every node downstream of them (within deps)."""
    consumers: dict[str, list[str]] = {}
    for node, sources in deps.items():
        for src in sources:
            consumers.setdefault(src, []).append(node)
    result: set[str] = set()
    stack = [r for r in roots if r in deps]
    while stack:
        node = stack.pop()
        if node not in result:
            result.add(node)
            stack.extend(consumers.get(node, ()))
    return result
