"""Conditioning nodes and how the sampler weighs areas, masks, strengths and timestep ranges.

A probe UNet whose x0 prediction is a constant per prompt (the prompt's first embedding value) makes
every blend readable: the guided result at a latent pixel is the weighted mean of the prompts there.
"""

from __future__ import annotations

import torch

from nodes.defs.conditioning import (
    ConditioningAverage,
    ConditioningCombine,
    ConditioningConcat,
    ConditioningSetArea,
    ConditioningSetAreaPercentage,
    ConditioningSetAreaStrength,
    ConditioningSetMask,
    ConditioningSetTimestepRange,
    ConditioningZeroOut,
)
from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.conds import prepare_conds
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.types import CondEntry, Conditioning, Mask

MS = DiscreteModelSampling.create("eps")
SHAPE = torch.Size((1, 4, 16, 16))
# Sigmas from the model's own table, so the probe's timestep lookup recovers them exactly.
MID_SIGMA = float(MS.sigmas[500])


def prompt(value: float, length: int = 77, pooled: bool = False) -> Conditioning:
    """A one-entry conditioning whose probe prediction is `value` everywhere."""
    embeds = torch.full((1, length, 8), value)
    return Conditioning(entries=(CondEntry(embeds=embeds, pooled=torch.ones(1, 4) if pooled else None),))


class ProbeUnet:
    """eps such that x0 = the prompt's constant; counts calls and batch sizes."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x_in, timesteps, embeds, pooled, extras):
        self.calls.append(x_in.shape[0])
        sigma = MS.sigmas[timesteps.long()].reshape(-1, 1, 1, 1)
        x = x_in * (sigma**2 + 1) ** 0.5
        target = embeds[:, 0, 0].reshape(-1, 1, 1, 1)
        return (x - target) / sigma


def guided(
    positive: Conditioning, negative: Conditioning, cfg: float = 1.0, sigma: float = MID_SIGMA, unet=None
):
    """The denoiser's output at x = 0 for one sigma."""
    unet = unet or ProbeUnet()
    den = CfgDenoiser(unet, MS, positive.entries, negative.entries, cfg)
    return den(torch.zeros(SHAPE), torch.tensor([sigma]))


def run(node, **inputs):
    return node().run(None, node.Inputs(**inputs))


def test_conditioning_combine_averages_the_predictions_of_both_prompts():
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=prompt(3.0)).CONDITIONING
    assert len(both.entries) == 2
    out = guided(both, prompt(0.0))
    assert torch.allclose(out, torch.full(SHAPE, 2.0), atol=1e-5)


def test_conditioning_combine_runs_batchable_entries_in_one_unet_call():
    unet = ProbeUnet()
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=prompt(3.0, length=154))
    guided(both.CONDITIONING, prompt(0.0), cfg=2.0, unet=unet)
    assert unet.calls == [3]  # two positives and the negative, token lengths padded to 154


def test_conditioning_set_area_strength_weighs_entries():
    strong = run(ConditioningSetAreaStrength, conditioning=prompt(3.0), strength=3.0).CONDITIONING
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=strong).CONDITIONING
    out = guided(both, prompt(0.0))
    assert torch.allclose(out, torch.full(SHAPE, 2.5), atol=1e-5)  # (1 * 1 + 3 * 3) / 4


def test_conditioning_set_area_applies_inside_with_ramped_inner_edges():
    # 64x64 px at (32, 32) -> latent rows/cols 4..11; ramps of min(8, 8 // 4) = 2 pixels on each side.
    area = run(ConditioningSetArea, conditioning=prompt(5.0), width=64, height=64, x=32, y=32, strength=1.0)
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=area.CONDITIONING)
    out = guided(both.CONDITIONING, prompt(0.0))[0, 0]
    assert torch.allclose(out[0, 0], torch.tensor(1.0))  # outside: the full-frame prompt alone
    assert torch.allclose(out[7, 7], torch.tensor(3.0))  # centre: equal weights
    edge = (1.0 + 5.0 * 0.5) / 1.5  # first row of the area: weight 1/2
    assert torch.allclose(out[4, 7], torch.tensor(edge), atol=1e-5)
    assert torch.allclose(out[11, 7], torch.tensor(edge), atol=1e-5)


def test_conditioning_area_gets_a_same_area_negative_entry():
    area = run(ConditioningSetArea, conditioning=prompt(5.0), width=64, height=64, x=32, y=32, strength=1.3)
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=area.CONDITIONING)
    pos, neg = prepare_conds(both.CONDITIONING.entries, prompt(0.0).entries, SHAPE, MS)
    assert len(pos) == 2 and len(neg) == 2
    twin = neg[1]
    assert twin.area == (8, 8, 4, 4) and twin.strength == 1.3
    assert float(twin.embeds[0, 0, 0]) == 0.0  # the negative prompt's own embeddings


def test_conditioning_set_area_percentage_rounds_against_the_latent():
    area = run(
        ConditioningSetAreaPercentage,
        conditioning=prompt(5.0),
        width=0.5,
        height=0.25,
        x=0.25,
        y=0.5,
        strength=1.0,
    ).CONDITIONING
    pos, _ = prepare_conds(area.entries, prompt(0.0).entries, SHAPE, MS)
    assert pos[0].area == (4, 8, 8, 4)


def test_conditioning_set_mask_limits_the_prompt_to_the_mask():
    mask = torch.zeros(1, 128, 128)
    mask[:, :, 64:] = 1.0  # right half
    masked = run(
        ConditioningSetMask,
        conditioning=prompt(5.0),
        mask=Mask(mask=mask),
        strength=1.0,
        set_cond_area="default",
    )
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=masked.CONDITIONING)
    out = guided(both.CONDITIONING, prompt(0.0))[0, 0]
    assert torch.allclose(out[:, :7], torch.tensor(1.0))
    assert torch.allclose(out[:, 9:], torch.tensor(3.0), atol=1e-5)


def test_conditioning_set_mask_bounds_runs_on_the_bounding_box_only():
    mask = torch.zeros(1, 16, 16)
    mask[:, 2:4, 3:5] = 1.0
    unet = ProbeUnet()
    masked = run(
        ConditioningSetMask,
        conditioning=prompt(5.0),
        mask=Mask(mask=mask),
        strength=1.0,
        set_cond_area="mask bounds",
    ).CONDITIONING
    pos, _ = prepare_conds(masked.entries, prompt(0.0).entries, SHAPE, MS)
    assert pos[0].area == (8, 8, 2, 3)  # at least 8 latent pixels a side
    guided(masked, prompt(0.0), cfg=2.0, unet=unet)
    assert sorted(unet.calls) == [1, 2]  # 8x8 crop (prompt + its negative twin), full-frame negative


def test_conditioning_set_timestep_range_applies_only_in_its_part_of_the_schedule():
    late = run(ConditioningSetTimestepRange, conditioning=prompt(5.0), start=0.5, end=1.0).CONDITIONING
    both = run(ConditioningCombine, conditioning_1=prompt(1.0), conditioning_2=late).CONDITIONING
    early_sigma, late_sigma = MS.sigma_max, float(MS.sigmas[20])
    assert torch.allclose(guided(both, prompt(0.0), sigma=early_sigma), torch.full(SHAPE, 1.0), atol=1e-4)
    assert torch.allclose(guided(both, prompt(0.0), sigma=late_sigma), torch.full(SHAPE, 3.0), atol=1e-4)


def test_conditioning_average_blends_embeddings_and_pooled():
    out = run(
        ConditioningAverage,
        conditioning_to=prompt(1.0, pooled=True),
        conditioning_from=prompt(3.0, length=154, pooled=True),
        conditioning_to_strength=0.25,
    ).CONDITIONING
    entry = out.entries[0]
    assert entry.embeds.shape == (1, 77, 8)  # conditioning_to's length
    assert torch.allclose(entry.embeds, torch.full((1, 77, 8), 2.5))
    assert torch.allclose(entry.pooled, torch.ones(1, 4))


def test_conditioning_average_pads_a_shorter_source_with_zeros():
    out = run(
        ConditioningAverage,
        conditioning_to=prompt(1.0, length=154),
        conditioning_from=prompt(3.0),
        conditioning_to_strength=0.5,
    ).CONDITIONING
    assert torch.allclose(out.entries[0].embeds[0, :77], torch.tensor(2.0))
    assert torch.allclose(out.entries[0].embeds[0, 77:], torch.tensor(0.5))


def test_conditioning_concat_appends_tokens_and_keeps_the_target_settings():
    area = run(ConditioningSetArea, conditioning=prompt(1.0), width=64, height=64, x=0, y=0, strength=2.0)
    out = run(
        ConditioningConcat, conditioning_to=area.CONDITIONING, conditioning_from=prompt(3.0)
    ).CONDITIONING
    entry = out.entries[0]
    assert entry.embeds.shape == (1, 154, 8)
    assert float(entry.embeds[0, 100, 0]) == 3.0
    assert entry.strength == 2.0 and entry.area is not None


def test_conditioning_zero_out_zeroes_embeddings_and_pooled():
    out = run(ConditioningZeroOut, conditioning=prompt(2.0, pooled=True)).CONDITIONING
    assert not out.entries[0].embeds.any() and not out.entries[0].pooled.any()
