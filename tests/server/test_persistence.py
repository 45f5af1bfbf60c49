"""Queue and history survive a clean restart and a `kill -9` in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import wait_for, wait_history
from tests.stub_pack.server_nodes import render_prompt

REPO = Path(__file__).resolve().parents[2]
SHOW_PROMPT = {
    "1": {"class_type": "StubConstant", "inputs": {"value": 3}},
    "2": {"class_type": "StubShow", "inputs": {"number": ["1", 0]}},
}


def two_chains(slow_steps: int) -> dict:
    """A fast render->save (nodes 1, 2; runs first) and a slow one (3, 4)."""
    prompt = render_prompt(steps=1, prefix="fast")
    slow = render_prompt(steps=slow_steps, delay=0.05, prefix="slow")
    prompt["3"] = slow["1"]
    prompt["4"] = {**slow["2"], "inputs": {**slow["2"]["inputs"], "images": ["3", 0]}}
    return prompt


class ServerProcess:
    """`python -m tests.server.stub_serve` on port 0 in a subprocess."""

    def __init__(self, base: Path, *extra: str):
        self.log = (base / "server.log").open("ab")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.server.stub_serve",
                "--port",
                "0",
                "--base-dir",
                str(base),
                "--log-level",
                "warning",
                *extra,
            ],
            cwd=base,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert "listening on" in line, f"server did not start: {line!r}; see {base / 'server.log'}"
        self.url = line.rsplit(" ", 1)[1].strip()
        wait_for(self._up, timeout=30, what="server up")

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/prompt", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=20)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.mark.slow
def test_kill_9_during_run_loses_no_queued_job(tmp_path):
    first = ServerProcess(tmp_path, "--no-requeue")
    with first.client() as http:
        running = http.post(
            "/prompt", json={"prompt": two_chains(slow_steps=400), "prompt_id": "running"}
        ).json()
        assert running["prompt_id"] == "running"
        queued = [
            http.post("/prompt", json={"prompt": SHOW_PROMPT, "prompt_id": f"q{i}"}).json()["prompt_id"]
            for i in range(3)
        ]
        # Wait until the fast chain's file exists and the slow node is stepping.
        wait_for(lambda: "2" in http.get("/api/jobs/running").json()["outputs"], what="first output written")
        wait_for(
            lambda: http.get("/api/jobs/running").json()["status"] == "in_progress", what="still running"
        )
    first.kill()

    second = ServerProcess(tmp_path, "--no-requeue")
    try:
        with second.client() as http:
            for prompt_id in queued:
                assert wait_history(http, prompt_id)["status"]["status_str"] == "success"
            crashed = http.get("/history/running").json()["running"]
            failed = http.get("/api/jobs", params={"status": "failed"}).json()["jobs"]
            image = crashed["outputs"]["2"]["images"][0]
            view = http.get("/view", params={"filename": image["filename"], "type": "output"})
    finally:
        second.terminate()
    assert crashed["status"]["status_str"] == "error"
    last = crashed["status"]["messages"][-1]
    assert last[0] == "execution_error" and "server stopped" in last[1]["exception_message"]
    assert last[1]["node_id"] == "3" and last[1]["node_type"] == "StubRender"
    assert [j["id"] for j in failed] == ["running"]
    assert failed[0]["preview_output"]["filename"] == image["filename"]
    assert view.status_code == 200


def test_clean_restart_requeues_running_and_keeps_history(make_server, folders):
    first = make_server()
    with first.client() as http:
        http.post("/prompt", json={"prompt": SHOW_PROMPT, "prompt_id": "done"})
        wait_history(http, "done")
        http.post("/prompt", json={"prompt": render_prompt(steps=400, delay=0.05), "prompt_id": "long"})
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="long prompt running")
        http.post("/prompt", json={"prompt": SHOW_PROMPT, "prompt_id": "after", "number": 5})
    first.stop()

    second = make_server()
    with second.client() as http:
        queue = http.get("/queue").json()
        order = [item[1] for item in queue["queue_running"] + queue["queue_pending"]]
        assert order == ["long", "after"]
        http.post("/interrupt")
        assert wait_history(http, "after")["status"]["completed"] is True
        history = list(http.get("/history").json())
    assert history[0] == "done"
    assert set(history) == {"done", "long", "after"}
