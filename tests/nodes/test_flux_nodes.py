"""FluxGuidance, FluxDisableGuidance, ModelSamplingFlux and EmptySD3LatentImage as a user sees them."""

from __future__ import annotations

import pytest
import torch

from nodes.defs.flux import EmptySD3LatentImage, FluxDisableGuidance, FluxGuidance, ModelSamplingFlux
from nodes.diffusion.model_handle import DiffusionModel
from nodes.diffusion.recipe import ComponentRecipe
from nodes.sampling.flow import FlowModelSampling, model_sampling_for
from nodes.sampling.schedulers import schedule
from nodes.types import CondEntry, Conditioning


def _cond() -> Conditioning:
    return Conditioning(entries=(CondEntry(torch.zeros(1, 4, 8), extras={"other": 1}),))


def test_flux_guidance_sets_value_and_keeps_other_extras() -> None:
    out = FluxGuidance().run(None, FluxGuidance.Inputs(conditioning=_cond(), guidance=4.5)).CONDITIONING
    assert out.entries[0].extras == {"other": 1, "guidance": 4.5}
    off = FluxDisableGuidance().run(None, FluxDisableGuidance.Inputs(conditioning=out)).CONDITIONING
    assert off.entries[0].extras["guidance"] is None


def test_flux_model_sampling_flux_shifts_schedule_with_size() -> None:
    model = DiffusionModel(ComponentRecipe("unused", "flux-dev", "unet"))
    small = ModelSamplingFlux().run(None, ModelSamplingFlux.Inputs(model=model, width=256, height=256)).MODEL
    big = ModelSamplingFlux().run(None, ModelSamplingFlux.Inputs(model=model, width=1024, height=1024)).MODEL
    ms_small, ms_big = model_sampling_for(small), model_sampling_for(big)
    assert isinstance(ms_small, FlowModelSampling)
    assert ms_small.params.shift == pytest.approx(0.5)
    assert ms_big.params.shift == pytest.approx(1.15)
    # A larger image keeps more noise at the same step.
    assert schedule(ms_big, "simple", 4)[1] > schedule(ms_small, "simple", 4)[1]


def test_flux_empty_sd3_latent_has_16_channels() -> None:
    latent = (
        EmptySD3LatentImage()
        .run(None, EmptySD3LatentImage.Inputs(width=256, height=192, batch_size=2))
        .LATENT
    )
    assert latent.samples.shape == (2, 16, 24, 32)
    assert not latent.samples.any()
