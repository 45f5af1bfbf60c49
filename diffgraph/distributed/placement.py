"""Cache-aware placement: items that share upstream work go to the worker already holding it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from engine.cache import node_signature
from engine.formats.workflow import is_link

# How far down the queue a free worker looks for an item matching its warm cache.
WINDOW = 64


def prompt_signatures(prompt: dict[str, Any]) -> set[str]:
    """Merkle signatures of every node of a prompt, as the cache keys them (without fingerprints).

    Two items share a signature exactly when they share that node and everything upstream of it:
    the same model file, the same prompt text through the same text encoder, and so on.
    """
    signatures: dict[str, str] = {}

    def sign(node_id: str, trail: frozenset[str]) -> str:
        if node_id in signatures:
            return signatures[node_id]
        if node_id in trail or node_id not in prompt:
            return f"missing:{node_id}"  # a cycle or dangling link: validation on the worker reports it
        node = prompt[node_id]
        inputs = node.get("inputs", {}) or {}
        links = {name: (str(v[0]), int(v[1])) for name, v in inputs.items() if is_link(v)}
        upstream = {src: sign(src, trail | {node_id}) for src, _ in links.values()}
        signatures[node_id] = node_signature(str(node.get("class_type")), 0, inputs, links, upstream)
        return signatures[node_id]

    for node_id in prompt:
        sign(node_id, frozenset())
    return set(signatures.values())


def shared_keys(prompts: Iterable[dict[str, Any]]) -> list[frozenset[str]]:
    """Per prompt, its signatures that at least one other prompt of the batch shares.

    Only shared work can make a warm worker faster; a sampler with its own seed never helps.
    """
    signed = [prompt_signatures(p) for p in prompts]
    counts = Counter(sig for sigs in signed for sig in sigs)
    return [frozenset(sig for sig in sigs if counts[sig] > 1) for sigs in signed]


def score(key: frozenset[str], mine: set[str], only_others: set[str]) -> int:
    """Higher is better: work this worker holds, minus work only another worker holds."""
    return 2 * len(key & mine) - len(key & only_others)


def choose(keys: list[frozenset[str]], mine: set[str], others: set[str]) -> int:
    """Index (into keys, the queue's first WINDOW items) of the item this worker should take next."""
    only_others = others - mine
    best, best_score = 0, None
    for index, key in enumerate(keys[:WINDOW]):
        value = score(key, mine, only_others)
        if best_score is None or value > best_score:
            best, best_score = index, value
    return best
