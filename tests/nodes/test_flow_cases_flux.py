"""ComfyUI's final latents for whole FLUX.1 dev / schnell workflows (data/flow_cases/): ours within rel L2 1e-4.

ComfyUI 0.3.64 on CPU ran each case's workflow_api.json on the reduced-depth full-width random files of
../shared/reference/flow (FLUX d2s2 BF16, CLIP-L fp16, T5-XXL fp8) at 128x128, 4 steps, seed 42, the same
two prompts in every case; data/flow_cases/README.md says how. One executor runs every case of this module,
so the prompts are encoded once. Needs about 10 GB of memory and the files (see tests/nodes/flow_reference).

Measured relative L2 against ComfyUI (final latent; SamplerCustomAdvanced's denoised output and the first
pass of the split chain where recorded):
(`DIFFGRAPH_FLOW_MODELS=<models> python -m pytest tests/nodes/test_flow_cases_flux.py -s`, 2 CPU threads,
7.5 min for the nine cases, peak RSS 10.8 GB):
  dev: ksampler_euler_simple 1.3e-7; custom_basic_guider 1.2e-7 (denoised 1.2e-7); custom_cfg_guider
  2.4e-7 (denoised 2.4e-7); ksampler_dpmpp_2m_beta 2.4e-7; split_sigmas 1.2e-7 (first pass 7.5e-8).
  schnell: ksampler_euler_simple 1.2e-7; custom_basic_guider 1.2e-7 (denoised 1.2e-7);
  ksampler_dpmpp_2m_beta 2.3e-7; split_sigmas 1.2e-7 (first pass 8.2e-8).
"""

from __future__ import annotations

import pytest

from tests.nodes.flow_reference import compare_case, runner_for

CASES = [
    "flux_dev_ksampler_euler_simple",
    "flux_dev_custom_basic_guider",
    "flux_dev_custom_cfg_guider",
    "flux_dev_ksampler_dpmpp_2m_beta",
    "flux_dev_split_sigmas",
    "flux_schnell_ksampler_euler_simple",
    "flux_schnell_custom_basic_guider",
    "flux_schnell_ksampler_dpmpp_2m_beta",
    "flux_schnell_split_sigmas",
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return runner_for(CASES, tmp_path_factory.mktemp("flux_cases"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_flux_workflow_final_latent_matches_comfyui(runner, case):
    compare_case(runner, case)
