"""DistributedSession: the Python API's pool sibling of Session."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from diffgraph import DistributedSession, RunFailed
from tests.distributed import stubs

pytestmark = pytest.mark.slow


def test_distributed_session_map_yields_every_variant_once_with_warm_workers(ray_cluster, project: Path):
    with DistributedSession(
        workers=2,
        worker_cpus=1,
        models_dir="models",
        output_dir="output",
        registry_factory=stubs.registry_factory,
    ) as cluster:
        wf = cluster.load("workflow.json")
        variants = [wf.copy().set("KSampler", "seed", seed) for seed in range(10, 16)]
        results = list(cluster.map(variants))
        assert sorted(r.index for r in results) == list(range(6)) and all(r.ok for r in results)
        for result in results:
            (path,) = result.all_files()
            assert json.loads(path.read_text())["seed"] == 10 + result.index
        loads = Counter(r.worker for r in results if "4" in r.executed)
        assert set(loads.values()) == {1}  # each worker loaded the checkpoint once

        single = cluster.run(wf.copy().set("KSampler", "seed", 42))
        assert single.ok and single.worker in cluster.workers and "4" in single.cached
        with pytest.raises(RunFailed, match="unlucky seed"):
            cluster.run(wf.copy().set("KSampler", "seed", 666))
    assert len(list((project / "output").glob("test_*.json"))) == 7
