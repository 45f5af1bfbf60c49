"""ModelMergeSimple and CheckpointSave on tiny SD1.5 checkpoints: the blend, and a saved merge that loads
back to the same latents."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from nodes.diffusion.checkpoint_io import read_header
from nodes.diffusion.make_checkpoint import make_checkpoint
from tests.nodes.sampling.conftest import PromptRunner


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge_models")
    make_checkpoint("sd15", "tiny", 0, root / "checkpoints" / "a.safetensors")
    make_checkpoint("sd15", "tiny", 1, root / "checkpoints" / "b.safetensors")
    make_checkpoint("sdxl", "tiny", 0, root / "checkpoints" / "xl.safetensors")
    return root


@pytest.fixture(scope="module")
def runner(models_root, tmp_path_factory) -> PromptRunner:
    from engine.devices import DevicePolicy
    from engine.model_store import ModelStore

    return PromptRunner(
        models_root, ModelStore(DevicePolicy.from_env(device="cpu")), tmp_path_factory.mktemp("mm")
    )


def _graph(model: list, ckpt: str = "a.safetensors") -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "14": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red house", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 5,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": model,
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "l/x"}},
    }


def _merge(ratio: float) -> dict:
    return {
        "class_type": "ModelMergeSimple",
        "inputs": {"model1": ["4", 0], "model2": ["14", 0], "ratio": ratio},
    }


def _latent(runner: PromptRunner, prompt: dict) -> torch.Tensor:
    result = runner.run(prompt)
    assert result.status == "success", result.error and result.error.data()
    return result.node_outputs["3"].LATENT.samples


def test_model_merge_ratio_one_keeps_model1_and_zero_gives_model2(runner):
    only_a = _latent(runner, _graph(["4", 0]))
    only_b = _latent(runner, _graph(["14", 0]))
    assert not torch.allclose(only_a, only_b)
    torch.testing.assert_close(
        _latent(runner, {**_graph(["12", 0]), "12": _merge(1.0)}), only_a, rtol=0, atol=0
    )
    torch.testing.assert_close(
        _latent(runner, {**_graph(["12", 0]), "12": _merge(0.0)}), only_b, rtol=0, atol=0
    )
    half = _latent(runner, {**_graph(["12", 0]), "12": _merge(0.5)})
    assert not torch.allclose(half, only_a) and not torch.allclose(half, only_b)
    # The stored base models were not blended in place.
    torch.testing.assert_close(_latent(runner, _graph(["4", 0])), only_a, rtol=0, atol=0)


def test_model_merge_refuses_two_families(runner):
    prompt = {**_graph(["12", 0]), "12": _merge(0.5)}
    prompt["14"]["inputs"]["ckpt_name"] = "xl.safetensors"
    result = runner.run(prompt)
    assert result.status == "error"
    assert "MergeMismatchError" in json.dumps(result.error.data())


def test_saved_merge_loads_back_to_the_same_latents(runner, models_root):
    prompt = {
        **_graph(["12", 0]),
        "12": _merge(0.3),
        "20": {
            "class_type": "CheckpointSave",
            "inputs": {
                "model": ["12", 0],
                "clip": ["4", 1],
                "vae": ["4", 2],
                "filename_prefix": "checkpoints/merged",
            },
        },
    }
    merged = _latent(runner, prompt)
    saved = runner.env.output_dir / "checkpoints" / "merged_00001_.safetensors"
    assert saved.is_file()
    header, _ = read_header(saved)
    source, _ = read_header(models_root / "checkpoints" / "a.safetensors")
    parts = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
    wanted = {k: v["shape"] for k, v in source.items() if k.startswith(parts)}
    assert {k: v["shape"] for k, v in header.items() if k != "__metadata__"} == wanted
    with safe_open(str(saved), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["prompt"])["20"]["class_type"] == "CheckpointSave"
    assert meta["modelspec.predict_key"] == "epsilon"
    shutil.copy(saved, models_root / "checkpoints" / "merged.safetensors")
    reloaded = _latent(runner, _graph(["4", 0], ckpt="merged.safetensors"))
    torch.testing.assert_close(reloaded, merged, rtol=1e-5, atol=1e-5)


def test_checkpoint_save_refuses_a_prefix_outside_the_output_folder(runner):
    prompt = _graph(["4", 0])
    prompt["20"] = {
        "class_type": "CheckpointSave",
        "inputs": {"model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2], "filename_prefix": "../escape/x"},
    }
    errors = runner.validate(prompt).node_errors
    assert "outside the output folder" in json.dumps(errors["20"])
