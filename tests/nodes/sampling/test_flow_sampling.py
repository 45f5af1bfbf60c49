"""Flow-matching sampling (FLUX / SD3 schedules) against ComfyUI's numbers on a toy denoiser.

The reference file data/comfyui_flow_sampling.json was made by make_comfyui_flow.py (ComfyUI 0.3.64 on
CPU, its own model-sampling classes, schedulers and sampler functions; see that script's docstring).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nodes.sampling.common import SamplerRun
from nodes.sampling.flow import FlowModelSampling, flux_shift_for_size
from nodes.sampling.samplers import SAMPLER_NAMES, SampleRequest, sample
from nodes.sampling.schedulers import SCHEDULER_NAMES, schedule
from nodes.types import FlowSampling, LatentFormat
from tests.nodes.sampling.flow_cases import FLOW_PARAMS, SEED, STEPS, start_latent, toy_cfg

REF = json.loads((Path(__file__).parent / "data" / "comfyui_flow_sampling.json").read_text())
# Identity latent format: the toy latent is already in model space.
IDENTITY = LatentFormat(name="identity", channels=2, scale_factor=1.0)
# Samplers whose float order differs slightly from ComfyUI's (still far below any visible change).
TOLERANCE = {"dpm_adaptive": 1e-4}


def _ms(label: str) -> FlowModelSampling:
    kind, shift, multiplier = FLOW_PARAMS[label]
    return FlowModelSampling.create(FlowSampling(kind, shift, multiplier))  # type: ignore[arg-type]


class ToyDenoiser:
    """The toy CFG denoiser of flow_cases, exposing the uncond x0 like CfgDenoiser."""

    def __init__(self) -> None:
        self.uncond_denoised: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        denoised, self.uncond_denoised = toy_cfg(x, sigma)
        return denoised


def test_flow_flux_shift_for_size_matches_model_sampling_flux() -> None:
    assert flux_shift_for_size(256, 256, 0.5, 1.15) == pytest.approx(0.5)
    assert flux_shift_for_size(128, 128, 0.5, 1.15) == pytest.approx(0.5 - 192 * 0.65 / 3840)
    assert flux_shift_for_size(1024, 1024, 0.5, 1.15) == pytest.approx(1.15)


@pytest.mark.parametrize("label", sorted(FLOW_PARAMS))
def test_flow_schedules_match_comfyui(label: str) -> None:
    ms = _ms(label)
    ref = REF["schedules"][label]
    for name in SCHEDULER_NAMES:
        ours = schedule(ms, name, STEPS + 1)
        torch.testing.assert_close(ours, torch.tensor(ref[name]), rtol=1e-6, atol=1e-7, msg=name)
    assert ms.percent_to_sigma(0.3) == pytest.approx(ref["percent_0.3"], rel=1e-6)


@pytest.mark.parametrize("label", sorted(FLOW_PARAMS))
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_flow_samplers_match_comfyui(label: str, sampler: str) -> None:
    if sampler not in REF["samplers"][label]:
        pytest.skip(f"{sampler} is newer than the ComfyUI release the reference was made with")
    ms = _ms(label)
    latent, noise = start_latent()
    sigmas = schedule(ms, "simple", STEPS).float()
    req = SampleRequest(latent, noise, sigmas, sampler, SEED)
    out = sample(ToyDenoiser(), ms, IDENTITY, req)
    ref = torch.tensor(REF["samplers"][label][sampler]).reshape(out.shape)
    tol = TOLERANCE.get(sampler, 2e-6)
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)


def test_flow_run_reports_half_log_snr_of_flow() -> None:
    run = SamplerRun(model_sampling=_ms("flux_1.15"))
    sigma = torch.tensor([0.25])
    assert run.flow
    torch.testing.assert_close(run.lambda_of(sigma), torch.log(torch.tensor([0.75 / 0.25])))
    torch.testing.assert_close(run.sigma_of(run.lambda_of(sigma)), sigma)
