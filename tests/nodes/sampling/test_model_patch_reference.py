"""FreeU_V2, PerturbedAttentionGuidance, SelfAttentionGuidance and RescaleCFG on the full-size random SD1.5
checkpoint against ComfyUI's latents (slow).

`../data/model_patches/` holds, per case, the API workflow and the final latent ComfyUI 0.3.64 saved for
it; its README says how they were made. Each graph is CheckpointLoaderSimple -> the patch node (`11`) ->
KSampler (`3`, 256x256, 4 steps, euler / normal, cfg 7) -> SaveLatent (`10`). Measured on the dev machine
(fp32, CPU): rel L2 1.7e-6 (freeu_v2), 2.1e-6 (pag), 1.6e-6 (sag), 1.6e-6 (rescale_cfg).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.nodes.sampling.test_reference_cases import TOLERANCE, reference_runner, rel_l2  # noqa: F401

CASES = Path(__file__).resolve().parents[1] / "data" / "model_patches"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["freeu_v2", "pag", "sag", "rescale_cfg"])
def test_model_patch_matches_comfyui(reference_runner, case):  # noqa: F811
    prompt = json.loads((CASES / case / "workflow_api.json").read_text())
    result = reference_runner.run(prompt)
    assert result.status == "success", result.error and result.error.data()
    err = rel_l2(
        result.node_outputs["3"].LATENT.samples, load_file(str(CASES / case / "latent.safetensors"))["latent"]
    )
    print(f"{case} rel L2 {err:.3e}")
    assert err <= TOLERANCE
