"""The model store: load once, LRU eviction under a byte budget, explicit unload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.devices import DevicePolicy, can_trim_host_heap
from engine.model_store import ModelStore


def _store(ram):
    return ModelStore(DevicePolicy.from_env(device="cpu"), ram_budget=ram)


def test_model_store_loads_once_and_reuses():
    store = _store(1 << 30)
    calls = []
    first = store.get("a", lambda: calls.append(1) or torch.nn.Linear(4, 4))
    assert store.get("a", lambda: calls.append(1) or torch.nn.Linear(4, 4)) is first
    assert calls == [1] and store.loads == 1


def test_model_store_evicts_least_recently_used_over_budget():
    store = _store(2 * (100 * 100 + 100) * 4 + 10)
    store.get("a", lambda: torch.nn.Linear(100, 100))
    store.get("b", lambda: torch.nn.Linear(100, 100))
    store.get("a", lambda: torch.nn.Linear(100, 100))  # a is now most recent
    store.get("c", lambda: torch.nn.Linear(100, 100))
    assert store.keys() == ["a", "c"]
    assert store.usage()["ram_bytes"] <= store.ram_budget


def test_model_store_unload_all_empties_it():
    store = _store(1 << 30)
    store.get("a", lambda: torch.nn.Linear(4, 4))
    store.unload_all()
    assert store.keys() == [] and store.usage()["entries"] == 0


def test_device_policy_cpu_computes_in_fp32():
    policy = DevicePolicy.from_env(device="cpu")
    assert policy.compute_dtype("compute", torch.float16) == torch.float32
    assert policy.compute_dtype("precise") == torch.float32
    assert DevicePolicy.from_env(device="cpu", dtype="bf16").compute_dtype("compute") == torch.bfloat16


def test_model_store_released_entry_is_dropped_before_older_ones():
    linear = (100 * 100 + 100) * 4
    store = _store(2 * linear + 10)
    store.get("model", lambda: torch.nn.Linear(100, 100))
    store.get("encoder", lambda: torch.nn.Linear(100, 100))
    store.release("encoder")  # done encoding: it goes first, though the model is older
    store.get("vae", lambda: torch.nn.Linear(100, 100))
    assert store.keys() == ["model", "vae"]


def test_model_store_size_hint_makes_room_before_loading():
    linear = (100 * 100 + 100) * 4
    store = _store(2 * linear + 10)
    store.get("a", lambda: torch.nn.Linear(100, 100))
    store.get("b", lambda: torch.nn.Linear(100, 100))
    seen = []

    def load():
        seen.append(store.keys())  # what is held while the new model is read
        return torch.nn.Linear(100, 100)

    store.get("c", load, size_hint=linear)
    assert seen == [["b"]] and store.keys() == ["b", "c"]


def test_model_store_on_cpu_warns_only_when_a_model_exceeds_the_ram_budget(caplog):
    # A CPU store's models live in RAM: a small VRAM budget (the default for a CPU policy) is not theirs.
    size = (100 * 100 + 100) * 4
    store = ModelStore(DevicePolicy.from_env(device="cpu"), ram_budget=2 * size, vram_budget=size // 2)
    with caplog.at_level("WARNING", logger="engine.model_store"):
        store.get("fits", lambda: torch.nn.Linear(100, 100))
    assert "exceeds its budget" not in caplog.text
    with caplog.at_level("WARNING", logger="engine.model_store"):
        store.get("too big", lambda: torch.nn.Linear(300, 100))
    assert "exceeds its budget" in caplog.text


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not can_trim_host_heap(), reason="needs glibc (malloc_trim) and /proc")
def test_model_store_dropping_a_model_of_mid_size_tensors_gives_its_memory_back():
    # Freeing two 30 MB blocks makes glibc serve later blocks up to 30 MB from its heap, as it does in a
    # long-running process: the 16 MB tensors below then stay resident after a drop unless trimmed.
    scratch = [torch.empty(30 << 20, dtype=torch.uint8) for _ in range(2)]
    del scratch
    pinned = []

    def load():
        model = torch.nn.Module()
        for i in range(40):
            model.register_buffer(f"b{i}", torch.ones(16 << 20, dtype=torch.uint8))
            pinned.append(torch.ones(200_000, dtype=torch.uint8))  # small blocks in between, still alive
        return model

    store = _store(1 << 30)
    store.get("model", load)
    held = _rss_mb()
    store.get("next", lambda: torch.nn.Linear(4, 4), size_hint=(1 << 30) - 1000)
    assert store.keys() == ["next"]
    assert _rss_mb() < held - 400, (held, _rss_mb())
