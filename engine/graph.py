"""The execution graph: which nodes a prompt needs, in a deterministic dependency order."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import networkx as nx

from engine.workflow import is_link


def natural_key(node_id: str) -> tuple[Any, ...]:
    """Sort "2" before "10" and "5:3" after "5": numeric parts compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", node_id))


def build_graph(prompt: dict[str, Any], outputs: Iterable[str]) -> nx.DiGraph:
    """A DiGraph of the outputs and their ancestors; edge src->dst for every link."""
    graph = nx.DiGraph()
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in graph and graph.nodes[node_id].get("visited"):
            continue
        graph.add_node(node_id, visited=True)
        for value in prompt[node_id].get("inputs", {}).values():
            if is_link(value):
                src = str(value[0])
                graph.add_edge(src, node_id)
                stack.append(src)
    return graph


def execution_order(graph: nx.DiGraph) -> list[str]:
    """Topological order, ties broken by natural node-id order, so runs are reproducible."""
    return list(nx.lexicographical_topological_sort(graph, key=natural_key))


def descendants_closure(graph: nx.DiGraph, roots: Iterable[str]) -> set[str]:
    """The roots and every node downstream of them."""
    result: set[str] = set()
    for root in roots:
        if root in graph:
            result |= {root} | nx.descendants(graph, root)
    return result
