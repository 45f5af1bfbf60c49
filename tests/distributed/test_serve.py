"""`diffgraph serve --ray`: prompts on a 2-worker pool, concurrently, events to the right client."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diffgraph.distributed.outputs import OutputCommitter
from diffgraph.distributed.pool import Pool, PoolOptions
from diffgraph.distributed.serve import RemoteExecutor
from server.app import create_app
from tests.distributed import stubs
from tests.server.conftest import Folders, LiveServer, is_done, receive_until, wait_for, wait_history
from tests.stub_pack.server_nodes import render_prompt, stub_registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """Two workers on the stub pack, shared by this module's servers."""
    base = tmp_path_factory.mktemp("pool")
    with Pool.start(
        PoolOptions(
            workers=2,
            worker_cpus=1,
            models_dir=str(base / "models"),
            input_dir=str(base / "input"),
            registry_factory=stubs.server_registry_factory,
        )
    ) as started:
        yield started


@pytest.fixture
def server(pool: Pool, tmp_path: Path) -> Iterator[LiveServer]:
    """A live server whose prompts run on the pool."""
    folders = Folders(tmp_path)
    env = folders.env
    committer = OutputCommitter(env.output_dir, env.temp_dir)
    slots = [RemoteExecutor(worker, committer) for worker in pool.workers]
    live = LiveServer(create_app(stub_registry(), env, settings=folders.settings(), slots=slots)).start()
    yield live
    live.stop()


def queue_prompt(http: Any, client_id: str, **render: Any) -> str:
    """POST /prompt for a render -> save prompt; its id."""
    body = {"prompt": render_prompt(**render), "client_id": client_id}
    return http.post("/prompt", json=body).json()["prompt_id"]


def prompt_ids(frames: list[Any]) -> set[str]:
    """Every prompt id named by the JSON frames."""
    return {
        f["data"]["prompt_id"] for f in frames if isinstance(f, dict) and "prompt_id" in f.get("data", {})
    }


def test_serve_ray_runs_two_prompts_at_once_routing_events_and_interrupts(server):
    flags = {"supports_preview_metadata": True}
    with server.ws("alice", flags) as alice, server.ws("bob", flags) as bob, server.client() as http:
        first = queue_prompt(http, "alice", seed=1, steps=8, delay=0.25, prefix="alice")
        second = queue_prompt(http, "bob", seed=2, steps=200, delay=0.1, prefix="bob")
        wait_for(lambda: len(http.get("/queue").json()["queue_running"]) == 2, 60, "both prompts running")
        frames_a = receive_until(alice, is_done(first), timeout=60)
        assert http.post("/interrupt", json={"prompt_id": second}).status_code == 200
        frames_b = receive_until(bob, is_done(second), timeout=60)
        history = wait_history(http, first)
        (image,) = history["outputs"]["2"]["images"]
        assert http.get("/view", params={"filename": image["filename"], "type": "output"}).status_code == 200
    assert prompt_ids(frames_a) == {first} and prompt_ids(frames_b) == {second}
    types_a = {f["type"] for f in frames_a if isinstance(f, dict)}
    types_b = {f["type"] for f in frames_b if isinstance(f, dict)}
    assert {"progress", "executed", "execution_success"} <= types_a
    assert any(isinstance(f, bytes) for f in frames_a)  # live previews reached the owner
    assert "execution_interrupted" in types_b and "execution_success" not in types_b
    assert (server.state.env.output_dir / image["filename"]).is_file()


def test_serve_ray_requeues_the_prompt_of_a_killed_worker(server):
    with server.ws("carol") as carol, server.client() as http:
        prompt_id = queue_prompt(http, "carol", seed=3, steps=30, delay=0.1, prefix="carol")
        receive_until(carol, lambda f: isinstance(f, dict) and f["type"] == "progress", timeout=60)
        (running,) = [w for w in server.state.worker.workers if w.current == prompt_id]
        os.kill(running.executor.worker.info()["pid"], signal.SIGKILL)
        frames = receive_until(carol, is_done(prompt_id), timeout=120)
        history = wait_history(http, prompt_id, timeout=60)
    assert history["status"]["status_str"] == "success"
    starts = [f for f in frames if isinstance(f, dict) and f["type"] == "execution_start"]
    assert len(starts) == 1  # the first start came before the frames collected here: it ran again
    assert len(list(server.state.env.output_dir.glob("carol_*.png"))) == 1
