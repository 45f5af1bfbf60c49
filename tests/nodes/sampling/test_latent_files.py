"""SaveLatent / LoadLatent in ComfyUI's .latent format."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine import Environment, ModelPaths
from engine.validation import validate_prompt
from nodes.defs.latent_io import LoadLatent, SaveLatent
from nodes.media.latent_files import read_latent_file
from nodes.pack import build_registry
from nodes.types import Latent


def _ctx(tmp_path):
    ui = {}
    ctx = SimpleNamespace(
        output_dir=tmp_path / "out",
        input_dir=tmp_path,
        prompt={"1": {"class_type": "SaveLatent"}},
        extra_pnginfo={"workflow": {"nodes": []}},
        set_ui=ui.update,
    )
    return ctx, ui


def test_save_latent_writes_comfyui_format_with_prompt_metadata(tmp_path):
    ctx, ui = _ctx(tmp_path)
    samples = torch.randn(2, 4, 8, 8)
    SaveLatent().run(ctx, SaveLatent.Inputs(samples=Latent(samples=samples), filename_prefix="latents/run"))
    entry = ui["latents"][0]
    assert entry == {"filename": "run_00001_.latent", "subfolder": "latents", "type": "output"}
    path = ctx.output_dir / "latents" / entry["filename"]
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == {"latent_tensor", "latent_format_version_0"}
        assert torch.equal(f.get_tensor("latent_tensor"), samples)
        assert json.loads(f.metadata()["prompt"]) == ctx.prompt
        assert json.loads(f.metadata()["workflow"]) == {"nodes": []}


def test_load_latent_round_trips_and_rescales_legacy_files(tmp_path):
    ctx, _ = _ctx(tmp_path)
    samples = torch.randn(1, 4, 8, 8)
    SaveLatent().run(ctx, SaveLatent.Inputs(samples=Latent(samples=samples), filename_prefix="x"))
    saved = ctx.output_dir / "x_00001_.latent"
    (tmp_path / "a.latent").write_bytes(saved.read_bytes())
    out = LoadLatent().run(ctx, LoadLatent.Inputs(latent="a.latent"))
    assert torch.equal(out.LATENT.samples, samples)
    save_file({"latent_tensor": samples}, str(tmp_path / "old.latent"))
    torch.testing.assert_close(read_latent_file(tmp_path / "old.latent"), samples / 0.18215)


def test_load_latent_validation_rejects_missing_and_escaping_files(tmp_path):
    env = SimpleNamespace(input_dir=tmp_path)
    assert "does not exist" in LoadLatent.validate_inputs({"latent": "nope.latent"}, env)
    assert "outside" in LoadLatent.validate_inputs({"latent": "../x.latent"}, env)


def test_save_latent_hostile_prefix_fails_validation_before_anything_runs(tmp_path):
    env = Environment(tmp_path / "out", tmp_path / "tmp", tmp_path / "in", model_paths=ModelPaths(tmp_path))
    registry = build_registry(ModelPaths(tmp_path), tmp_path / "in")
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "../../x"}},
    }
    checked = validate_prompt(prompt, registry, env=env)
    (error,) = checked.node_errors["2"]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert "filename_prefix" in error["details"] and "outside the output folder" in error["details"]
