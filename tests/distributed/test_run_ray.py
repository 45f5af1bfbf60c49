"""`run --ray` and DistributedSession on a local 2-CPU cluster: cache reuse, worker deaths, Ctrl-C."""

from __future__ import annotations

import _thread
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from diffgraph import DistributedSession, RunFailed
from diffgraph.cli import main
from tests.distributed import stubs

pytestmark = pytest.mark.slow
RAY = ["--ray", "--workers", "2", "--worker-cpus", "1", "--json", "--progress", "plain"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run the CLI on the stubs; (exit code, --json document)."""
    capsys.readouterr()
    code = main(["run", "workflow.json", *args, *RAY], registry_factory=stubs.registry_factory)
    out = capsys.readouterr().out
    # Ray's own notices (a worker died...) may share stdout; the document starts a line with "{".
    return code, json.loads(out[out.index("{\n") :])


def write_batch(project: Path, texts: list[str]) -> str:
    """A JSON-lines batch file setting the positive prompt per line."""
    path = project / "batch.jsonl"
    path.write_text("".join(json.dumps({"Positive.text": t}) + "\n" for t in texts), encoding="utf-8")
    return str(path)


def test_run_ray_sweep_splits_across_workers_and_each_loads_and_encodes_once(ray_cluster, project, capsys):
    # --shared-out: the workers write into --out themselves (the crash test below sends bytes back).
    code, doc = run_cli(capsys, "--seeds", "1-8", "--shared-out")
    assert code == 0 and doc["summary"]["succeeded"] == 8
    items = doc["items"]
    assert {i["worker"] for i in items} == {"w1", "w2"}
    for worker in ("w1", "w2"):
        ran = Counter(c for i in items if i["worker"] == worker for c in i["executed_class_types"].values())
        assert ran["CheckpointLoaderSimple"] == 1 and ran["CLIPTextEncode"] == 2, (worker, ran)
    # Named as a local run names them: one counter sequence in --out, one file per item.
    names = sorted(p.name for p in (project / "output").iterdir())
    assert names == [f"test_{n:05}_.json" for n in range(1, 9)]
    seeds = sorted(json.loads(Path(i["files"][0]).read_text())["seed"] for i in items)
    assert seeds == list(range(1, 9))


def test_run_ray_killed_worker_reruns_elsewhere_and_poisoned_item_fails_alone(ray_cluster, project, capsys):
    marker = project / "crashed-once"
    batch = write_batch(project, ["a", f"crash-once:{marker}", "b", "crash-always", "c"])
    code, doc = run_cli(capsys, "--batch", batch)
    assert code == 1
    by_line = {i["line"]: i for i in doc["items"]}
    assert [by_line[n]["status"] for n in range(1, 6)] == [
        "success",
        "success",
        "success",
        "poisoned",
        "success",
    ]
    assert len(by_line[2]["worker_deaths"]) == 1 and marker.exists()
    assert len(by_line[4]["worker_deaths"]) == 2 and "killed 2 workers" in by_line[4]["error"]["message"]
    # Every successful item wrote exactly one file: nothing lost, nothing twice.
    files = sorted(p.name for p in (project / "output").iterdir())
    assert files == [f"test_{n:05}_.json" for n in range(1, 5)]
    texts = sorted(json.loads((project / "output" / f).read_text())["positive"] for f in files)
    assert texts == sorted(["a", f"crash-once:{marker}", "b", "c"])


def test_run_ray_ctrl_c_interrupts_running_items_and_leaves_queued_ones(ray_cluster, project, capsys):
    marker = project / "started"
    batch = write_batch(project, [f"slow:{marker}"] * 5)

    def interrupt_when_started() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    started = time.monotonic()
    code, doc = run_cli(capsys, "--batch", batch)
    assert code == 130 and doc["interrupted"] is True
    assert time.monotonic() - started < 60  # the slow items (10 s each) did not run to the end
    statuses = Counter(i["status"] for i in doc["items"])
    assert statuses["interrupted"] >= 1 and statuses["success"] == 0, (doc["items"], doc["not_run"])
    assert len(doc["not_run"]) == 5 - len(doc["items"]) >= 3
    assert not list((project / "output").glob("*.json"))


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


def test_run_ray_refuses_the_demo_checkpoint(project, capsys):
    code = main(["run", "workflow.json", "--ray", "--demo"], registry_factory=stubs.registry_factory)
    assert code == 2 and "--demo does not combine with --ray" in capsys.readouterr().err


def test_pool_shape_one_worker_per_gpu_or_per_cpus(ray_cluster):
    from diffgraph.distributed.pool import pool_shape

    # The test cluster has 2 CPUs and no GPU: by default one worker per 4 CPUs, at least one.
    assert pool_shape(None, None) == (1, 2.0, 0.0)
    assert pool_shape(2, 1.0) == (2, 1.0, 0.0)
