"""Device policy: exact precision keeps fp32 on CPU; fast runs the denoiser in bf16 only where the CPU has it."""

from __future__ import annotations

import logging

import pytest
import torch

from engine import devices
from engine.devices import DevicePolicy, cpu_flags, parse_precision
from engine.precision import PrecisionError


def test_precision_defaults_to_exact_and_reads_the_environment(monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_PRECISION", raising=False)
    assert parse_precision(None) == "exact"
    monkeypatch.setenv("DIFFGRAPH_PRECISION", "fast")
    assert parse_precision(None) == "fast"
    assert parse_precision("exact") == "exact"


def test_precision_unknown_name_is_refused():
    with pytest.raises(PrecisionError, match="unknown precision 'turbo'"):
        parse_precision("turbo")


def test_exact_precision_keeps_every_cpu_model_in_fp32(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    policy = DevicePolicy.from_env(device="cpu", precision="exact")
    assert {policy.compute_dtype(r) for r in ("compute", "precise", "denoiser")} == {torch.float32}


def test_fast_precision_puts_only_the_denoiser_in_bf16_on_a_bf16_cpu(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    policy = DevicePolicy.from_env(device="cpu", precision="fast")
    assert policy.compute_dtype("denoiser") == torch.bfloat16
    assert policy.compute_dtype("compute") == torch.float32  # text encoders: once per prompt, keep exact
    assert policy.compute_dtype("precise") == torch.float32


def test_fast_precision_without_native_bf16_stays_fp32_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="engine.devices"):
        policy = DevicePolicy.from_env(device="cpu", precision="fast")
    assert policy.compute_dtype("denoiser") == torch.float32
    assert "no native bf16" in caplog.text


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\nbogomips\t: 5000\n")
    assert {"avx2", "avx512_bf16"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_available_memory_on_cpu_reads_memavailable(tmp_path):
    from engine.devices import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       23000000 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n")
    assert available_memory(torch.device("cpu"), meminfo) == 12000000 * 1024
    assert available_memory(torch.device("cpu"), tmp_path / "missing") is None
