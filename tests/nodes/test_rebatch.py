"""RebatchLatents / RebatchImages against ComfyUI 0.3.64's own nodes, and through the list-aware executor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors import safe_open

from nodes.defs.rebatch import rebatch_images, rebatch_latents
from nodes.types import Image, Latent

DATA = Path(__file__).resolve().parent / "data" / "rebatch"


def _inputs():
    spec = importlib.util.spec_from_file_location("make_reference", DATA / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.inputs()


def _reference():
    with safe_open(str(DATA / "reference.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118 - safe_open is no dict


def test_rebatch_latents_matches_comfyui():
    latents, _ = _inputs()
    ours = rebatch_latents(
        [
            Latent(
                samples=x["samples"],
                noise_mask=x.get("noise_mask"),
                batch_index=tuple(x["batch_index"]) if "batch_index" in x else None,
            )
            for x in latents
        ],
        2,
    )
    ref, meta = _reference()
    assert len(ours) == int(meta["latents"])
    for i, latent in enumerate(ours):
        assert torch.equal(latent.samples, ref[f"out{i}_samples"])
        assert list(latent.batch_index) == ref[f"out{i}_index"].tolist()
        if f"out{i}_mask" in ref:
            assert torch.equal(latent.noise_mask, ref[f"out{i}_mask"])
        else:
            assert latent.noise_mask is None


def test_rebatch_images_matches_comfyui():
    _, images = _inputs()
    ours = rebatch_images([Image(pixels=p) for p in images], 2)
    ref, meta = _reference()
    assert len(ours) == int(meta["images"])
    for i, image in enumerate(ours):
        assert torch.equal(image.pixels, ref[f"img{i}"])


def test_rebatch_latents_makes_the_next_nodes_run_once_per_new_batch(tmp_path):
    from engine import Environment, Registry
    from engine.executor import Executor
    from engine.validation import validate_prompt
    from nodes.defs.latent import EmptyLatentImage
    from nodes.defs.latent_io import SaveLatent
    from nodes.defs.rebatch import RebatchLatents

    registry = Registry([EmptyLatentImage, RebatchLatents, SaveLatent])
    env = Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 5}},
        "2": {"class_type": "RebatchLatents", "inputs": {"latents": ["1", 0], "batch_size": 2}},
        "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "rb"}},
    }
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors
    result = Executor(registry, env).execute(checked.prompt, prompt_id="p", outputs=checked.outputs)
    assert result.status == "success", result.error
    batches = result.node_outputs["2"].LATENT
    assert [b.samples.shape[0] for b in batches] == [2, 2, 1]
    assert [b.batch_index for b in batches] == [(0, 1), (2, 3), (4,)]
    assert len(list((tmp_path / "out").glob("rb_*.latent"))) == 3
    bad = dict(
        prompt, **{"2": {"class_type": "RebatchLatents", "inputs": {"latents": ["1", 0], "batch_size": 0}}}
    )
    assert not validate_prompt(bad, registry, env=env).ok
