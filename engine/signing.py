"""Cache keys of a dynamic run's nodes, submitted or added by expansions, computed on first use."""

from __future__ import annotations

import math
from typing import Any

from engine.cache import CacheEntry, node_signature
from engine.flow import DynamicPrompt
from engine.formats.workflow import is_link
from engine.outcome import ExecutorHost
from engine.scheduler import DependencyCycle

# Dynamic runs cache per-slot item lists, the fixed-order path cache Outputs models: separate keys.
KEY_PREFIX = "dyn:"


class DynamicSigner:
    """Merkle keys over the dynamic prompt (class, version, literal inputs, upstream keys)."""

    def __init__(self, ex: ExecutorHost, dynprompt: DynamicPrompt, forced: bool | set[str], salt: str = ""):
        self.ex = ex
        # Kept apart per compute precision, as the static executor's keys (engine.precision.cache_salt).
        self.salt = salt
        self.dynprompt = dynprompt
        self.forced = forced
        self.keys: dict[str, str] = {}

    def closure(self, outputs: list[str]) -> list[str]:
        """The outputs and every node any of their links reaches, lazy ones included."""
        seen: dict[str, None] = {}
        stack = list(outputs)
        while stack:
            node_id = stack.pop()
            if node_id in seen:
                continue
            seen[node_id] = None
            for value in self.dynprompt.get_node(node_id).get("inputs", {}).values():
                if is_link(value):
                    stack.append(value[0])
        return list(seen)

    def key(self, node_id: str) -> str:
        """node_id's cache key, signing its ancestry first (iteratively: expansions nest deep)."""
        stack = [node_id]
        expanded: set[str] = set()
        while stack:
            current = stack[-1]
            if current in self.keys:
                stack.pop()
                continue
            inputs = self.dynprompt.get_node(current).get("inputs", {})
            unsigned = [v[0] for v in inputs.values() if is_link(v) and v[0] not in self.keys]
            if unsigned:
                if current in expanded:  # its inputs were visited and are still unsigned: a loop
                    raise DependencyCycle(f"node {current} depends on itself through {', '.join(unsigned)}")
                expanded.add(current)
                stack.extend(unsigned)
                continue
            self.keys[current] = self._sign(current, inputs)
            stack.pop()
        return self.keys[node_id]

    def _sign(self, node_id: str, inputs: dict[str, Any]) -> str:
        node = self.dynprompt.get_node(node_id)
        spec = self.ex.registry.known_spec(node["class_type"])
        links = {name: (v[0], int(v[1])) for name, v in inputs.items() if is_link(v)}
        fingerprint = self.ex._fingerprint(spec, inputs, links) if spec.has_fingerprint else None
        if not spec.node_cls.cacheable:
            fingerprint = math.nan
        signature = node_signature(
            node["class_type"],
            spec.node_cls.version,
            inputs,
            links,
            self.keys,
            fingerprint=fingerprint,
            node_id=node_id if spec.signs_node_id else None,
            salt=self.salt,
        )
        return KEY_PREFIX + signature

    def cached_entry(self, node_id: str) -> CacheEntry | None:
        """The cache entry of node_id, unless the run forces it to execute."""
        if self.forced is True or (self.forced and self.dynprompt.get_real_node_id(node_id) in self.forced):
            return None
        return self.ex.cache.get(self.key(node_id))
