"""One small local Ray cluster (2 CPUs) per test module, and a project folder for CLI runs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stub_pack import txt2img as stub_nodes

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local cluster for this module's tests; workers import this checkout's tests package."""
    if ray.is_initialized():
        ray.shutdown()
    # Ray's memory monitor kills workers when the whole machine runs short, which on a shared CI
    # machine says nothing about these tests; their workers are small.
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"  # noqa: SIM112 (Ray spells it so)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]])}},
    )
    yield
    ray.shutdown()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with models/checkpoints/tiny.safetensors and workflow.json (txt2img), as cwd."""
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"stub")
    (tmp_path / "workflow.json").write_text(json.dumps(stub_nodes.txt2img_prompt()), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIFFGRAPH_MODELS_DIR", raising=False)
    return tmp_path
