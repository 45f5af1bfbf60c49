"""The output cache: Merkle signatures of nodes, and a byte-bounded LRU store shared across prompts."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from engine.flow import SlotLists
from engine.node import EdgeType, NodeOutputs

DEFAULT_BUDGET_BYTES = 8 * 1024**3


def _canonical(value: Any) -> str:
    """A stable text form of a literal input (dict keys sorted)."""
    if type(value) in (int, float, bool) or value is None:
        return repr(value)  # fast path: most inputs are scalars, and repr keeps 1 and 1.0 apart
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def node_signature(
    class_type: str,
    version: int,
    inputs: dict[str, Any],
    links: dict[str, tuple[str, int]],
    upstream: dict[str, str],
    *,
    fingerprint: Any = None,
    node_id: str | None = None,
    salt: str = "",
) -> str:
    """ComfyUI's cache key, as a Merkle hash.

    It covers the class, node version, the canonical literal inputs, each linked input's upstream
    signature and slot (inputs in sorted name order; `links` names the linked ones), the fingerprint (IS_CHANGED) value, and the node
    id only for non-idempotent nodes. Node ids stay out otherwise, so identical sub-graphs share results.
    A NaN fingerprint never equals itself: the node gets a fresh key every time. `salt` separates runs
    whose results differ for the same graph (the compute precision); empty for the default.
    """
    if isinstance(fingerprint, float) and math.isnan(fingerprint):
        fingerprint = f"nan:{uuid.uuid4().hex}"
    parts = [class_type, str(version), _canonical(fingerprint), node_id or ""]
    if salt:
        parts.append(salt)
    for name in sorted(inputs):
        link = links.get(name)
        if link is not None:
            parts.append(f"{name}=>{upstream[link[0]]}#{link[1]}")
        else:
            parts.append(f"{name}={_canonical(inputs[name])}")
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def estimate_nbytes(outputs: NodeOutputs | SlotLists | None) -> int:
    """Bytes an entry keeps alive: EdgeType.nbytes() for typed values, tensor sizes, else small."""
    if outputs is None:
        return 64
    total = 0
    values = outputs.items() if isinstance(outputs, SlotLists) else outputs.__dict__.values()
    for value in values:
        if isinstance(value, EdgeType):
            total += value.nbytes()
        elif hasattr(value, "element_size") and hasattr(value, "numel"):
            total += value.numel() * value.element_size()
        else:
            total += sys.getsizeof(value)
    return total + 64


@dataclass
class CacheEntry:
    """A node's cached result: typed outputs and the UI it published."""

    outputs: Any  # NodeOutputs from the static executor, SlotLists from a dynamic run
    ui: dict[str, Any] | None
    nbytes: int


class OutputCache:
    """LRU over signatures, bounded by bytes (not entries), kept across prompts."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self.used_bytes = 0

    def get(self, key: str) -> CacheEntry | None:
        """The entry for key (marked most recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def put(self, key: str, outputs: NodeOutputs | SlotLists | None, ui: dict[str, Any] | None) -> None:
        """Store a result, evicting least recently used entries to stay within the byte budget."""
        nbytes = estimate_nbytes(outputs)
        if key in self._entries:
            self.used_bytes -= self._entries.pop(key).nbytes
        if nbytes > self.budget_bytes:
            return  # larger than the whole budget: keeping it would evict everything else for nothing
        self._entries[key] = CacheEntry(outputs, ui, nbytes)
        self.used_bytes += nbytes
        while self.used_bytes > self.budget_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.used_bytes -= evicted.nbytes

    def clear(self) -> None:
        """Drop every entry (ComfyUI's /free with free_memory)."""
        self._entries.clear()
        self.used_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
