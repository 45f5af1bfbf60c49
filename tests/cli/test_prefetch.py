"""`diffgraph run` asks the kernel to read the workflow's model files ahead while the libraries import."""

from __future__ import annotations

import json
import os

import pytest

from diffgraph import prefetch
from engine import ModelPaths


@pytest.fixture
def models(tmp_path):
    (tmp_path / "checkpoints" / "sd").mkdir(parents=True)
    (tmp_path / "loras").mkdir()
    (tmp_path / "checkpoints" / "sd" / "base.safetensors").write_bytes(b"x" * 64)
    (tmp_path / "loras" / "style.safetensors").write_bytes(b"y" * 64)
    return ModelPaths(tmp_path)


def _advised(monkeypatch):
    calls = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    return calls


def test_prefetch_reads_ahead_every_model_an_api_workflow_names(tmp_path, models, monkeypatch):
    calls = _advised(monkeypatch)
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd/base.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors", "model": ["4", 0]}},
        "11": {"class_type": "LoraLoader", "inputs": {"lora_name": "missing.safetensors"}},
    }
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow))
    files = prefetch.prefetch_workflow_models(path, models, wait=True)
    assert [p.name for p in files] == ["base.safetensors", "style.safetensors"]
    assert [(os.path.basename(f), o, n, a) for f, o, n, a in calls] == [
        ("base.safetensors", 0, 64, os.POSIX_FADV_WILLNEED),
        ("style.safetensors", 0, 64, os.POSIX_FADV_WILLNEED),
    ]


def test_prefetch_advises_a_big_file_chunk_by_chunk(tmp_path, monkeypatch):
    # One call for a whole file reads only the kernel's read-ahead window; chunks cover all of it.
    calls = _advised(monkeypatch)
    monkeypatch.setattr(prefetch, "ADVICE_CHUNK", 1000)
    path = tmp_path / "big.safetensors"
    path.write_bytes(b"z" * 2500)
    assert prefetch.advise_read_ahead(path)
    assert [(o, n) for _, o, n, _ in calls] == [(0, 1000), (1000, 1000), (2000, 500)]


def test_prefetch_finds_names_in_ui_widgets(tmp_path, models):
    ui = {
        "nodes": [{"type": "CheckpointLoaderSimple", "widgets_values": ["sd/base.safetensors"]}],
        "links": [],
    }
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    assert [p.name for p in prefetch.prefetch_workflow_models(path, models)] == ["base.safetensors"]


@pytest.mark.parametrize("content", [b"not json", b"\xff\xfe", b"[1, 2", b"[" * 100_000 + b"]" * 100_000])
def test_prefetch_skips_what_is_not_a_json_workflow(tmp_path, models, content):
    path = tmp_path / "wf.json"
    path.write_bytes(content)
    assert prefetch.prefetch_workflow_models(path, models) == []
    assert prefetch.prefetch_workflow_models(tmp_path / "image.png", models) == []


def test_prefetch_never_leaves_the_models_folders(tmp_path, models):
    (tmp_path / "secret.safetensors").write_bytes(b"z")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"1": {"inputs": {"ckpt_name": "../secret.safetensors"}}}))
    assert prefetch.prefetch_workflow_models(path, models) == []
