"""Every sampler reports each step's latent in the same (sigma) space as its input and its result."""

from __future__ import annotations

import pytest
import torch

from nodes.sampling import schedulers
from nodes.sampling.common import SamplerRun
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.samplers import SAMPLER_NAMES, SAMPLERS
from tests.nodes.sampling.toy_models import GaussianDenoiser

MS = DiscreteModelSampling.create()
# UniPC's corrector moves x after the model saw it, so its reported latent is close to, not equal to,
# the latent its x0 prediction was made at.
CORRECTED_AFTER_EVALUATION = {"uni_pc", "uni_pc_bh2"}


class RecordingDenoiser(GaussianDenoiser):
    """The analytic denoiser, remembering every (x, sigma, x0) it was asked for."""

    def __init__(self):
        super().__init__(torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(1, 1, 1, 8))
        self.calls: list[tuple[torch.Tensor, float, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = super().__call__(x, sigma)
        # As CFG hands CFG++ samplers at cfg 1: the uncond prediction is the prediction itself.
        self.uncond_denoised = out
        self.calls.append((x.clone(), float(sigma.reshape(-1)[0]), out.clone()))
        return out

    def call_for(self, x0: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(input latent, sigma) of the evaluation that produced this x0 prediction."""
        best = min(self.calls, key=lambda call: float((call[2] - x0).abs().max()))
        assert float((best[2] - x0).abs().max()) < 1e-9, "the reported x0 is a model prediction"
        return best[0], best[1]


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_step_latents_are_in_sigma_space_for_every_sampler(name):
    model = RecordingDenoiser()
    sigmas = schedulers.schedule(MS, "karras", 10).double()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    reported: list[tuple[torch.Tensor, torch.Tensor]] = []
    run = SamplerRun(seed=3, model_sampling=MS, callback=lambda i, x0, lat: reported.append((x0, lat)))
    SAMPLERS[name](model, x.clone(), sigmas, run)
    assert reported
    torch.testing.assert_close(reported[0][1], x, rtol=1e-9, atol=1e-9, msg="step 0 reports the input")
    for x0, latent in reported:
        seen, sigma = model.call_for(x0)
        # Data ~ N(mean, 0.25): a latent at noise level sigma has rms sqrt(0.25 + sigma^2) around the mean.
        # Loose where the data dominates (10-step SDE samplers over- or undershoot the data variance).
        scale = _rms(latent - model.mean) / (0.25 + sigma**2) ** 0.5
        low, high = (0.75, 1.33) if sigma >= 1 else (0.5, 2.0)
        assert low < scale < high, (sigma, scale)
        if name in CORRECTED_AFTER_EVALUATION:
            assert _rms(latent - seen) < 0.2 * _rms(seen - model.mean)
        else:
            torch.testing.assert_close(latent, seen, rtol=1e-9, atol=1e-9)


# UniPC stops at sigma 0.001 and the DPM-Solver samplers at sigma_min; every other sampler's last step
# to sigma 0 is ComfyUI's denoising step (or an Euler step, which is the same).
NOT_ENDING_ON_X0 = {"uni_pc", "uni_pc_bh2", "dpm_fast", "dpm_adaptive"}


@pytest.mark.parametrize("name", sorted(set(SAMPLER_NAMES) - NOT_ENDING_ON_X0))
def test_result_is_the_last_x0_prediction(name):
    model = RecordingDenoiser()
    sigmas = schedulers.schedule(MS, "karras", 8).double()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigmas[0]
    reported: list[torch.Tensor] = []
    run = SamplerRun(seed=3, model_sampling=MS, callback=lambda i, x0, lat: reported.append(x0))
    out = SAMPLERS[name](model, x.clone(), sigmas, run)
    torch.testing.assert_close(out, model.calls[-1][2], rtol=1e-9, atol=1e-9)
    if name != "sa_solver_pece":  # PECE re-evaluates the corrected state after the last report
        torch.testing.assert_close(out, reported[-1], rtol=1e-9, atol=1e-9)
