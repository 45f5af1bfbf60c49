"""The generic model store: load once, reuse across prompts, byte budgets for RAM and VRAM, LRU eviction.

Entries are keyed by any hashable key chosen by the caller (the node side knows what a key means).
Torch modules are moved to the policy's compute device on use; when device memory runs over its
budget the least recently used modules go back to RAM, and when RAM runs over its budget the least
recently used entries are dropped (the caller reloads them through its loader next time).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch

from engine.devices import DevicePolicy

log = logging.getLogger(__name__)


def object_nbytes(obj: Any) -> int:
    """Bytes held by a stored object: module parameters and buffers, a tensor, or `obj.nbytes()`."""
    if isinstance(obj, torch.nn.Module):
        tensors = {id(t): t for t in (*obj.parameters(), *obj.buffers())}
        return sum(t.numel() * t.element_size() for t in tensors.values())
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    nbytes = getattr(obj, "nbytes", None)
    return int(nbytes()) if callable(nbytes) else 0


def object_device(obj: Any) -> torch.device:
    """The device an object's tensors live on (cpu for objects without tensors)."""
    if isinstance(obj, torch.nn.Module):
        for t in (*obj.parameters(), *obj.buffers()):
            return t.device
    if isinstance(obj, torch.Tensor):
        return obj.device
    return torch.device("cpu")


def default_ram_budget() -> int:
    """Half of physical RAM: leaves room for activations, the cache and other processes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


@dataclass
class _Entry:
    obj: Any
    nbytes: int
    on_device: bool


class ModelStore:
    """Loaded models by key, with LRU eviction under byte budgets (thread-safe)."""

    def __init__(
        self,
        policy: DevicePolicy | None = None,
        *,
        ram_budget: int | None = None,
        vram_budget: int | None = None,
    ):
        self.policy = policy or DevicePolicy.from_env()
        self.ram_budget = ram_budget if ram_budget is not None else default_ram_budget()
        self.vram_budget = vram_budget if vram_budget is not None else self._default_vram_budget()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0

    def _default_vram_budget(self) -> int:
        # Keep ~1.5 GiB of the device free for activations; unknown memory (mps) gets a fixed budget.
        if self.policy.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.policy.device).total_memory
            return max(total - (3 << 29), total // 2)
        return 8 << 30

    @property
    def device(self) -> torch.device:
        """The compute device models are moved to."""
        return self.policy.device

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[Hashable]:
        """Stored keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def put(self, key: Hashable, obj: Any) -> Any:
        """Store an already-loaded object (in RAM); returns the stored object."""
        with self._lock:
            if key in self._entries:
                return self._entries[key].obj
            device = object_device(obj)
            on_device = device.type != "cpu" or self.policy.device.type == "cpu"
            self._entries[key] = _Entry(obj, object_nbytes(obj), on_device)
            self._enforce_budgets(keep=key)
            return obj

    def get(
        self, key: Hashable, loader: Callable[[], Any], *, to_device: bool = True, size_hint: int = 0
    ) -> Any:
        """The object for `key`, loading it once with `loader()`; modules end on the compute device.

        `size_hint` (bytes the load is expected to hold) makes room first: least recently used
        entries are dropped until it fits the RAM budget, so the old and the new never coexist.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if size_hint:
                    self._drop_until(self.ram_budget - size_hint, keep=key)
                obj = loader()
                self.loads += 1
                self.put(key, obj)
                entry = self._entries[key]
            self._entries.move_to_end(key)
            if to_device and not entry.on_device:
                self._move(entry, self.policy.device)
                self._enforce_budgets(keep=key)
            return entry.obj

    def release(self, key: Hashable) -> None:
        """The caller is done with `key` for now: it becomes the first entry to drop under the RAM budget.

        A text encoder used once per prompt (T5-XXL) is released after encoding, so the diffusion model
        loaded next displaces it rather than a model that is still wanted. Dropped at once if the store
        is over its RAM budget.
        """
        with self._lock:
            if key not in self._entries:
                return
            self._entries.move_to_end(key, last=False)
            self._drop_until(self.ram_budget, keep=None)

    def evict(self, key: Hashable) -> bool:
        """Drop one entry; True when it was stored."""
        with self._lock:
            dropped = self._entries.pop(key, None) is not None
        if dropped:
            self.policy.empty_cache()
        return dropped

    def unload_all(self) -> None:
        """Drop every stored model and return device memory."""
        with self._lock:
            self._entries.clear()
        self.policy.empty_cache()

    def usage(self) -> dict[str, int]:
        """Bytes in RAM and on the device, and the entry count."""
        with self._lock:
            vram = sum(e.nbytes for e in self._entries.values() if e.on_device and self._separate_device)
            ram = sum(e.nbytes for e in self._entries.values()) - vram
            return {"ram_bytes": ram, "vram_bytes": vram, "entries": len(self._entries)}

    @property
    def _separate_device(self) -> bool:
        return self.policy.device.type != "cpu"

    def _move(self, entry: _Entry, device: torch.device) -> None:
        if isinstance(entry.obj, torch.nn.Module | torch.Tensor):
            entry.obj = entry.obj.to(device)
        entry.on_device = device.type == self.policy.device.type

    def _enforce_budgets(self, keep: Hashable) -> None:
        if self._separate_device:
            for key in list(self._entries):
                if self.usage()["vram_bytes"] <= self.vram_budget:
                    break
                entry = self._entries[key]
                if key != keep and entry.on_device:
                    log.info("model store: offloading %s to RAM (VRAM budget)", _short(key))
                    self._move(entry, torch.device("cpu"))
            self.policy.empty_cache()
        self._drop_until(self.ram_budget, keep)
        kept = self._entries.get(keep)
        # On a CPU policy every entry counts as "on the device" yet lives in RAM: its budget is the RAM one.
        in_vram = kept is not None and kept.on_device and self._separate_device
        if kept is not None and kept.nbytes > (self.vram_budget if in_vram else self.ram_budget):
            log.warning("model store: %s alone (%d bytes) exceeds its budget", _short(keep), kept.nbytes)

    def _drop_until(self, limit: int, keep: Hashable | None) -> None:
        """Drop least recently used RAM entries (never `keep`) until RAM usage is at most `limit`."""
        dropped = False
        for key in list(self._entries):
            if self.usage()["ram_bytes"] <= limit:
                break
            if key != keep and not (self._entries[key].on_device and self._separate_device):
                log.info("model store: dropping %s (RAM budget)", _short(key))
                # No local name may keep the dropped entry alive while its memory is collected below.
                del self._entries[key]
                dropped = True
        if dropped:
            # Dropped modules are freed only once nothing refers to them; collect cycles now so their
            # memory is back before the next load, not at the collector's leisure.
            gc.collect()
            self.policy.empty_cache()


def _short(key: Hashable) -> str:
    text = repr(key)
    return text if len(text) < 160 else text[:157] + "..."
