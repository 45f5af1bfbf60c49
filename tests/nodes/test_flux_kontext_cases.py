"""ComfyUI's final latents for a FLUX Kontext edit and a FLUX Fill inpaint on reduced-depth random files.

ComfyUI 0.3.64 on CPU (a server started with --cpu) ran data/flux_kontext/<case>/workflow_api.json and
its SaveLatent output is stored there as latent.safetensors (reference_cases/record_with_comfyui.py
recorded them, with data/flux_kontext/input/ as ComfyUI's input folder):
- kontext_d2s2: FLUX.1 dev d2s2 (Kontext files have dev's layout), two ReferenceLatents (128x128 and
  96x64 pictures, "offset" placement), FluxGuidance 2.5, KSampler euler/simple, 3 steps, cfg 1, 128x128;
- fill_d2s2: FLUX.1 Fill dev d2s2 (make-checkpoint --arch flux1-fill-dev --size reduced --seed 1234,
  the reference README's value rule), InpaintModelConditioning with its noise mask on a 128x128 RGBA
  picture (the transparent box is repainted), FluxGuidance 30, KSampler euler/normal, 3 steps, cfg 1.
Both use the reference README's FLUX autoencoder, CLIP-L and T5-XXL fp8 files. The test runs the same
workflows headless and compares the latents (relative L2). Files as in test_flux_reference.py
($DIFFGRAPH_FLOW_MODELS or $DIFFGRAPH_TEST_CACHE); the Fill file is looked up beside them and built
(about 2 GB) into the test cache, or the test's temporary folder, when missing.

Measured (both cases in one pytest run, two shared CPU cores): Kontext relative L2 1.3e-7 (max abs
1.9e-6), Fill 2.2e-7 (max abs 2.9e-6) against ComfyUI's latents; 4 min 43 s, peak RSS 12.0 GB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import Environment, ModelPaths
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.diffusion.flux_layout import make_flux_file
from tests.nodes.flow_reference import FILES, SEED, extra_flow_file, linked_models
from tests.nodes.flow_reference import flow_models_dir as _models_dir
from tests.nodes.test_flux_reference import MAX_REL_L2

DATA = Path(__file__).parent / "data" / "flux_kontext"
FILL = ("diffusion_models", "flux1-fill-dev-random-d2s2.safetensors")
FILL_BYTES = 2_055_917_456


@pytest.fixture(scope="module")
def case_models(tmp_path_factory) -> Path:
    """A models folder with the reference files and the Fill file under the workflows' names.

    The reference folder itself when it holds the Fill file; else a folder of hard links.
    """
    flow = _models_dir()
    if (flow / FILL[0] / FILL[1]).is_file():
        return flow
    fill = extra_flow_file(
        FILL,
        FILL_BYTES,
        lambda path: make_flux_file("flux1-fill-dev", "reduced", SEED, path),
        tmp_path_factory.mktemp("fill"),
    )
    files = {key: flow / key[0] / key[1] for key in FILES}
    return linked_models(tmp_path_factory.mktemp("kontext_models"), {**files, FILL: fill})


@pytest.mark.slow
@pytest.mark.parametrize("case", ["kontext_d2s2", "fill_d2s2"])
def test_flux_edit_case_matches_comfyui_latent(case, case_models, tmp_path, model_store):
    from nodes.pack import build_registry

    prompt = json.loads((DATA / case / "workflow_api.json").read_text())
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
    result = Executor(registry, env).execute(checked.prompt, prompt_id=case, outputs=checked.outputs)
    assert result.status == "success", result.error and result.error.data()
    saved = sorted((tmp_path / "output").rglob("*.latent"))
    assert len(saved) == 1
    ours = load_file(str(saved[0]))["latent_tensor"].float()
    theirs = load_file(str(DATA / case / "latent.safetensors"))["latent"].float()
    assert ours.shape == theirs.shape == (1, 16, 16, 16)
    rel = float((ours - theirs).norm() / theirs.norm())
    assert rel <= MAX_REL_L2, f"{case}: relative L2 {rel:.3g} vs ComfyUI's latent"
