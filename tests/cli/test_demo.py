"""`diffgraph run --demo`: a missing checkpoint is replaced by a loudly announced random-weight one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffgraph import demo


@pytest.fixture
def fake_maker(monkeypatch):
    """Stand in for the model stack's checkpoint maker (the real one is tested with the real nodes)."""
    made: list[Path] = []

    def make(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"random")
        made.append(path)

    monkeypatch.setattr(demo, "make_demo_checkpoint", make)
    return made


def test_demo_replaces_only_a_missing_checkpoint_and_says_so(cli, fake_maker):
    args = (
        "run",
        "workflow.json",
        "--set",
        "4.ckpt_name=v1-5-pruned-emaonly.safetensors",
        "--demo",
        "--json",
    )
    result = cli(*args)
    assert result.code == 0, result.err
    assert fake_maker == [Path("models") / "checkpoints" / demo.DEMO_CHECKPOINT]
    assert "DEMO MODE" in result.err and "RANDOM weights" in result.err and "NOISE" in result.err
    assert "--demo was given" in result.err
    assert "v1-5-pruned-emaonly.safetensors" in result.err
    assert result.json()["items"][0]["status"] == "success"
    again = cli(*args)
    assert again.code == 0 and len(fake_maker) == 1  # made once, reused, still announced
    assert "DEMO MODE" in again.err


def test_demo_with_a_present_checkpoint_runs_real_weights(cli, fake_maker):
    result = cli("run", "workflow.json", "--demo")
    assert result.code == 0
    assert fake_maker == [] and "DEMO MODE" not in result.err and "running with real weights" in result.err


def test_without_demo_a_missing_checkpoint_is_never_substituted(cli, fake_maker):
    result = cli("run", "workflow.json", "--set", "4.ckpt_name=v1-5-pruned-emaonly.safetensors")
    assert result.code == 2 and fake_maker == []
    assert "add --demo" in result.err


def test_fresh_machine_uses_the_demo_without_the_flag_and_says_why(cli, project, fake_maker):
    (project / "models" / "checkpoints" / "tiny.safetensors").unlink()
    result = cli("run", "workflow.json", "--json")
    assert result.code == 0, result.err
    assert "DEMO MODE" in result.err and "has no checkpoint yet" in result.err and "--no-demo" in result.err
    assert result.json()["demo_checkpoint"] == {"4": "tiny.safetensors"}
    again = cli("run", "workflow.json")  # the demo file alone still counts as a fresh machine
    assert again.code == 0 and "DEMO MODE" in again.err and len(fake_maker) == 1


def test_no_demo_fails_on_a_fresh_machine(cli, project, fake_maker):
    (project / "models" / "checkpoints" / "tiny.safetensors").unlink()
    result = cli("run", "workflow.json", "--no-demo")
    assert result.code == 2 and fake_maker == [] and "ckpt_name" in result.err


def test_demo_renders_large_latents_smaller_and_says_so(cli, project, fake_maker):
    (project / "models" / "checkpoints" / "tiny.safetensors").unlink()
    result = cli("run", "workflow.json", "--set", "5.width=512", "--set", "5.height=768", "--json")
    assert result.code == 0, result.err
    assert "renders smaller: #5 EmptyLatentImage 512x768 -> 168x256" in result.err
    doc = result.json()
    assert doc["demo_resized"] == {"5": "512x768 -> 168x256"}
    image = json.loads(Path(doc["items"][0]["files"][0]).read_text())
    assert (image["w"], image["h"]) == (168, 256)


def test_real_runs_keep_the_workflow_size(cli):
    result = cli("run", "workflow.json", "--set", "5.width=512", "--json")
    assert result.code == 0 and result.json()["demo_resized"] == {}
    assert json.loads(Path(result.json()["items"][0]["files"][0]).read_text())["w"] == 512
