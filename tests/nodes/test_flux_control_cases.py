"""ComfyUI's final latents for FLUX.1 Canny dev and FLUX dev with a BFL control LoRA, on reduced-depth files.

ComfyUI 0.3.64 on CPU ran the graph of data/flux_control/<case>/workflow_api.json with
data/flux_control/input/ as its input folder; data/flux_control/record_lowmem_with_comfyui.py (ComfyUI's
node classes called in order, text encoders dropped before the diffusion model loads) stored its final
latent there as latent.safetensors (key `latent`, raw VAE space as SaveLatent writes it):
- canny_d2s2: a FLUX.1 Canny dev d2s2 file (make-checkpoint --arch flux1-canny-dev --size reduced --seed
  1234, the reference README's value rule), InstructPixToPixConditioning on a 128x128 edge picture,
  FluxGuidance 30, KSampler euler/normal, 3 steps, cfg 1;
- depth_lora_d2s2: the reference FLUX dev d2s2 file through LoraLoaderModelOnly with a random BFL control
  LoRA (make-checkpoint --arch lora-flux-bfl-control --size reduced --seed 1234 --rank 16 --dtype bf16,
  which widens img_in to 128 features), InstructPixToPixConditioning on a 128x128 depth picture,
  FluxGuidance 10, the same sampler.
Both use the reference README's FLUX autoencoder, CLIP-L and T5-XXL fp8 files. Files as in
test_flux_reference.py ($DIFFGRAPH_FLOW_MODELS or $DIFFGRAPH_TEST_CACHE); the Canny file is looked up
beside them and built (about 2 GB) into the test cache, or a temporary folder, when missing; the LoRA
(15 MB) is built each run.

Measured (both cases in one pytest run, two shared CPU cores): Canny relative L2 1.9e-7, control LoRA
1.6e-7 against ComfyUI's latents; 2 min 23 s, peak RSS 14.2 GB.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_lora import make_lora_file
from tests.nodes.flow_reference import (
    MAX_REL_L2,
    SEED,
    WorkflowRunner,
    extra_flow_file,
    files_named_by,
    flow_models_dir,
    linked_models,
    rel_l2,
    saved_latent,
)

DATA = Path(__file__).parent / "data" / "flux_control"
CASES = ("canny_d2s2", "depth_lora_d2s2")
CANNY = ("diffusion_models", "flux1-canny-dev-random-d2s2.safetensors")
CANNY_BYTES = 2_054_344_592
LORA = ("loras", "flux1-depth-dev-lora-random-d2s2.safetensors")


def _prompt(case: str) -> dict:
    return json.loads((DATA / case / "workflow_api.json").read_text())


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> WorkflowRunner:
    """One runner over hard links to the reference files, the Canny file and the LoRA."""
    named = files_named_by(*map(_prompt, CASES))
    flow = flow_models_dir(named)
    canny = extra_flow_file(
        CANNY,
        CANNY_BYTES,
        lambda path: make_flux_file("flux1-canny-dev", "reduced", SEED, path),
        tmp_path_factory.mktemp("canny"),
    )
    lora = make_lora_file(
        "flux-bfl-control",
        "reduced",
        SEED,
        tmp_path_factory.mktemp("lora") / LORA[1],
        rank=16,
        dtype=torch.bfloat16,
    )
    files = {key: flow / key[0] / key[1] for key in named}
    models = linked_models(tmp_path_factory.mktemp("models"), {**files, CANNY: canny, LORA: lora})
    work = tmp_path_factory.mktemp("work")
    for picture in (DATA / "input").iterdir():
        shutil.copyfile(picture, work / picture.name)
    return WorkflowRunner(models, work)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_flux_control_case_matches_comfyui_latent(case, runner):
    ours = saved_latent(runner.run(case, _prompt(case)), "control")
    theirs = load_file(str(DATA / case / "latent.safetensors"))["latent"]
    assert ours.shape == theirs.shape == (1, 16, 16, 16)
    rel = rel_l2(ours, theirs)
    print(case, f"relative L2 {rel:.3g}")
    assert rel <= MAX_REL_L2, f"{case}: relative L2 {rel:.3g} vs ComfyUI's latent"
