"""Engine test fixtures: a fresh stub registry and executor per test."""

from __future__ import annotations

import pytest

from engine import Environment
from engine.executor import Executor
from tests.stub_pack import arithmetic


@pytest.fixture
def registry():
    arithmetic.CALLS.clear()
    arithmetic.FINGERPRINTS.clear()
    return arithmetic.fresh_registry()


@pytest.fixture
def env(tmp_path):
    return Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")


@pytest.fixture
def executor(registry, env):
    return Executor(registry, env)
