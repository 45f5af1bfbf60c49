"""kill -9 at random moments, twenty times over: no torn file, no lost prompt, interrupted prompts finish."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from tests.server.conftest import wait_for
from tests.server.test_persistence import ServerProcess
from tests.stub_pack.server_nodes import render_prompt

ROUNDS = 20


def _writing_prompt(seed: int) -> dict:
    """Render a 512x512 picture in two slow steps, then save it as an uncompressed PNG in slow slices."""
    prompt = render_prompt(seed=seed, steps=2, delay=0.05, prefix=f"crash{seed}")
    prompt["1"]["inputs"].update(width=512, height=512)
    prompt["2"]["inputs"]["write_pause"] = 0.01
    return prompt


def _check_outputs(base) -> int:
    """Every PNG under output/ decodes completely; returns how many there are."""
    pngs = list((base / "output").rglob("*.png"))
    for path in pngs:
        with Image.open(path) as image:
            image.load()
    return len(pngs)


@pytest.mark.slow
def test_kill_9_during_writes_twenty_times(tmp_path):
    rng = random.Random(15)
    submitted: list[str] = []
    for round_ in range(ROUNDS):
        server = ServerProcess(tmp_path)
        with server.client() as http:
            # The last round's prompts are still known after the restart: none was lost.
            known = {j["id"] for j in http.get("/api/jobs").json()["jobs"]}
            assert set(submitted) <= known, set(submitted) - known
            _check_outputs(tmp_path)
            for k in range(2):
                prompt_id = f"r{round_}-{k}"
                http.post("/prompt", json={"prompt": _writing_prompt(round_ * 2 + k), "prompt_id": prompt_id})
                submitted.append(prompt_id)
            wait_for(lambda: http.get("/queue").json()["queue_running"], what="a prompt running")
            wait_for(lambda: rng.random() < 0.15, timeout=5, what="a random moment")
        server.kill()

    final = ServerProcess(tmp_path)
    try:
        with final.client() as http:
            wait_for(
                lambda: http.get("/prompt").json()["exec_info"]["queue_remaining"] == 0, 120, "queue drained"
            )
            history = http.get("/history").json()
    finally:
        final.terminate()
    assert set(history) == set(submitted)  # nothing lost, nothing left behind
    failed = {k: v for k, v in history.items() if not v["status"]["completed"]}
    for entry in failed.values():  # only a prompt running at two kills in a row may fail
        assert "stopped twice" in entry["status"]["messages"][-1][1]["exception_message"]
    assert len(failed) <= ROUNDS // 2
    assert _check_outputs(tmp_path) >= len(history) - len(failed)
    assert not [p for p in (tmp_path / "output").rglob("*") if p.suffix == ".png" and p.stat().st_size == 0]


@pytest.mark.slow
def test_kill_9_requeues_the_running_prompt_which_then_finishes(tmp_path):
    first = ServerProcess(tmp_path)
    with first.client() as http:
        http.post("/prompt", json={"prompt": render_prompt(steps=40, delay=0.05), "prompt_id": "victim"})
        http.post("/prompt", json={"prompt": render_prompt(steps=1), "prompt_id": "next"})
        wait_for(lambda: http.get("/queue").json()["queue_running"], what="victim running")
    first.kill()
    second = ServerProcess(tmp_path)
    try:
        with second.client() as http:
            queue = http.get("/queue").json()
            order = [item[1] for item in queue["queue_running"] + queue["queue_pending"]]
            assert order[0] == "victim"
            wait_for(lambda: http.get("/history/next").json(), 60, "both done")
            history = http.get("/history").json()
    finally:
        second.terminate()
    assert list(history) == ["victim", "next"]
    assert history["victim"]["status"]["completed"] is True
