"""ComfyUI's final latents for USOStyleReference and EasyCache on the reduced-depth random FLUX dev file.

ComfyUI 0.3.64 on CPU (a server started with --cpu, its input folder data/uso/input/) ran
data/uso/uso_d2s2/workflow_api.json; reference_cases/record_with_comfyui.py stored both of its
SaveLatent outputs in latent.safetensors (keys `uso` and `easycache`). The workflow: FLUX.1 dev d2s2
with the reference README's CLIP-L, T5-XXL fp8 and autoencoder files; a SigLIP so400m/14-384 shaped
random tower (make-checkpoint --arch siglip-vision --size reduced --seed 1234, fp16, 27 layers: ComfyUI
builds the published depth whatever the file holds) encoding data/uso/input/style.png scaled by
ImageScaleToMaxDimension (area, longest side 200) with a centre crop; a random USO projector
(--arch uso-projector --size reduced --seed 1234, float32); USOStyleReference -> KSampler euler/simple,
3 steps, cfg 1, 128x128 ("uso"); EasyCache (threshold 0.6, 0.15 to 0.95, verbose) on the plain model
-> KSampler euler/simple, 10 steps ("easycache"; ComfyUI's log: 5 of 10 steps skipped).

The SigLIP and projector files are looked up beside the reference files (clip_vision/, model_patches/)
and otherwise built (about 0.9 GB) into $DIFFGRAPH_TEST_CACHE/flow or the test's temporary folder.

Measured (one pytest run, two shared CPU cores): "uso" relative L2 1.3e-7 (max abs 1.9e-6), "easycache"
2.9e-7 (max abs 2.0e-6) with the same 5 skipped steps; 3 min 3 s, peak RSS 10.9 GB.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import Environment, ModelPaths
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.diffusion.make_uso import make_uso_file
from tests.nodes.flow_reference import SEED, extra_flow_file, files_named_by, linked_models
from tests.nodes.flow_reference import flow_models_dir as _models_dir
from tests.nodes.test_flux_reference import MAX_REL_L2

DATA = Path(__file__).parent / "data" / "uso"
CASE = DATA / "uso_d2s2"
EXTRA = {
    ("clip_vision", "siglip-random.safetensors"): ("siglip-vision", 856_505_672),
    ("model_patches", "uso-projector-random.safetensors"): ("uso-projector", 43_094_464),
}


@pytest.fixture(scope="module")
def case_models(tmp_path_factory) -> Path:
    """A folder of hard links to the reference files and the USO files (names may not lead outside it)."""
    prompt = json.loads((CASE / "workflow_api.json").read_text())
    flow = _models_dir(files_named_by(prompt))
    scratch = tmp_path_factory.mktemp("uso_files")
    files = {key: flow / key[0] / key[1] for key in files_named_by(prompt)}
    for key, (arch, size) in EXTRA.items():
        files[key] = extra_flow_file(
            key, size, lambda path, arch=arch: make_uso_file(arch, "reduced", SEED, path), scratch
        )
    return linked_models(tmp_path_factory.mktemp("uso_models"), files)


@pytest.mark.slow
def test_uso_and_easycache_case_matches_comfyui_latents(case_models, tmp_path, model_store, caplog):
    from nodes.pack import build_registry

    prompt = json.loads((CASE / "workflow_api.json").read_text())
    paths = ModelPaths(case_models)
    registry = build_registry(paths, DATA / "input")
    env = Environment(
        output_dir=tmp_path / "output",
        temp_dir=tmp_path / "temp",
        input_dir=DATA / "input",
        models=model_store,
        model_paths=paths,
    )
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors or checked.error
    torch.set_num_threads(os.cpu_count() or 1)
    with caplog.at_level(logging.INFO, logger="nodes.diffusion.easycache"):
        result = Executor(registry, env).execute(checked.prompt, prompt_id="uso", outputs=checked.outputs)
    assert result.status == "success", result.error and result.error.data()
    reused = [r for r in caplog.records if "reusing" in r.getMessage()]
    assert len(reused) == 5  # ComfyUI skipped 5 of the 10 steps
    theirs = load_file(str(CASE / "latent.safetensors"))
    for key in ("uso", "easycache"):
        (saved,) = sorted((tmp_path / "output").rglob(f"{key}_*.latent"))
        ours = load_file(str(saved))["latent_tensor"].float()
        assert ours.shape == theirs[key].shape == (1, 16, 16, 16)
        rel = float((ours - theirs[key]).norm() / theirs[key].norm())
        print(f"{key}: relative L2 {rel:.3g}, max abs {float((ours - theirs[key]).abs().max()):.3g}")
        assert rel <= MAX_REL_L2, f"{key}: relative L2 {rel:.3g} vs ComfyUI's latent"
