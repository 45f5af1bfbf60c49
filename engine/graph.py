"""The execution graph: which nodes a prompt needs, in a deterministic dependency order.

Validation builds a networkx DiGraph for its checks; the per-submission hot path here uses plain
dicts, because planning runs on every queued prompt and networkx's per-edge cost dominates there.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Iterable
from typing import Any

from engine.formats.workflow import is_link

Dependencies = dict[str, list[str]]  # node id -> ids of the nodes it reads from
Links = dict[str, dict[str, tuple[str, int]]]  # node id -> input name -> (source id, output slot)


@functools.lru_cache(maxsize=1 << 16)  # ids recur across submissions; the regex split is the cost
def natural_key(node_id: str) -> tuple[Any, ...]:
    """Sort "2" before "10" and "5:3" after "5": numeric parts compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", node_id))


def linked_inputs(prompt: dict[str, Any], outputs: Iterable[str]) -> Links:
    """The outputs and all their ancestors, each with its linked inputs (the one pass over links)."""
    links: Links = {}
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in links:
            continue
        mine = links[node_id] = {}
        for name, value in prompt[node_id].get("inputs", {}).items():
            if is_link(value):
                mine[name] = (value[0], int(value[1]))
                stack.append(value[0])
    return links


def sources_of(links: Links) -> Dependencies:
    """Each node's link sources, from its linked inputs."""
    return {node_id: [src for src, _ in mine.values()] for node_id, mine in links.items()}


def execution_order(deps: Dependencies) -> list[str]:
    """Topological order, ties broken by natural node-id order, so runs are reproducible."""
    # Rank nodes once by natural id; the heap then compares plain ints.
    ranked = sorted(deps, key=natural_key)
    rank = {node: i for i, node in enumerate(ranked)}
    consumers: dict[str, list[str]] = {node: [] for node in deps}
    waiting = {}
    for node, sources in deps.items():
        distinct = set(sources)
        waiting[node] = len(distinct)
        for src in distinct:
            consumers[src].append(node)
    ready = [rank[n] for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = ranked[heapq.heappop(ready)]
        order.append(node)
        for consumer in consumers[node]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, rank[consumer])
    return order


def descendants_closure(deps: Dependencies, roots: Iterable[str]) -> set[str]:
    """The roots and every node downstream of them (within deps)."""
    roots = [r for r in roots if r in deps]
    if not roots:
        return set()
    consumers: dict[str, list[str]] = {}
    for node, sources in deps.items():
        for src in sources:
            consumers.setdefault(src, []).append(node)
    result: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in result:
            result.add(node)
            stack.extend(consumers.get(node, ()))
    return result
