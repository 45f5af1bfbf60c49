"""ModelSamplingDiscrete's variants (eps, v, lcm, x0, img_to_img; zsnr) against ComfyUI's numbers.

data/comfyui_model_sampling_discrete.json was written by make_comfyui_model_sampling.py (its docstring
says how): ComfyUI 0.3.64's node patched onto a stand-in SD model, every choice with zsnr off and on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.schedulers import schedule

DATA = json.loads((Path(__file__).parent / "data" / "comfyui_model_sampling_discrete.json").read_text())
PREDICTION = {"eps": "eps", "v_prediction": "v", "lcm": "lcm", "x0": "x0", "img_to_img": "img_to_img"}


def _ms(name: str) -> tuple[DiscreteModelSampling, dict]:
    sampling, zsnr = name.split("/zsnr=")
    return DiscreteModelSampling.create(PREDICTION[sampling], zsnr=zsnr == "True"), DATA["cases"][name]  # type: ignore[arg-type]


def _close(ours, theirs, rtol=1e-6, atol=1e-7) -> None:
    torch.testing.assert_close(
        torch.as_tensor(ours).double(), torch.tensor(theirs).double(), rtol=rtol, atol=atol
    )


@pytest.mark.parametrize("name", sorted(DATA["cases"]))
def test_model_sampling_discrete_table_and_maps_match_comfyui(name):
    ms, ref = _ms(name)
    assert len(ms.sigmas) == ref["table_size"]
    _close(ms.sigmas[::37], ref["sigmas_every_37"])
    _close([ms.sigma_min, ms.sigma_max], [ref["sigma_min"], ref["sigma_max"]])
    _close(ms.timestep(torch.tensor(DATA["sigmas"])), ref["timestep"], atol=0)
    _close(ms.sigma(torch.tensor(DATA["timesteps"])), ref["sigma"], rtol=1e-5)
    _close([ms.percent_to_sigma(p) for p in DATA["percents"]], ref["percent_to_sigma"], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(DATA["cases"]))
def test_model_sampling_discrete_scalings_match_comfyui(name):
    ms, ref = _ms(name)
    x = torch.tensor(ref["x"]).view(2, 1, 2, 2)
    out = torch.tensor(ref["out"]).view(2, 1, 2, 2)
    sigma = torch.tensor(ref["batch_sigma"])
    _close(ms.calculate_input(sigma, x).flatten(), ref["input"], rtol=1e-5, atol=1e-6)
    _close(ms.calculate_denoised(sigma, out, x).flatten(), ref["denoised"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(DATA["cases"]))
@pytest.mark.parametrize("scheduler", ["simple", "normal", "karras", "sgm_uniform"])
def test_model_sampling_discrete_schedules_match_comfyui(name, scheduler):
    ms, ref = _ms(name)
    _close(schedule(ms, scheduler, 6), ref["schedules"][scheduler], rtol=1e-5)


def test_model_sampling_zsnr_makes_the_last_step_pure_noise():
    plain, zsnr = DiscreteModelSampling.create("v"), DiscreteModelSampling.create("v", zsnr=True)
    # alpha_bar at the top of the table is pinned near zero: sigma ~ 4519 instead of ~14.6.
    assert plain.sigma_max < 15 and zsnr.sigma_max > 4000


def test_model_sampling_discrete_lcm_feeds_the_unet_the_distilled_timesteps(
    tiny_models_dir, tiny_sd15_name, model_store, tmp_path, monkeypatch
):
    from nodes.defs.loaders import CheckpointLoaderSimple
    from nodes.defs.model_sampling import ModelSamplingDiscrete
    from nodes.defs.sampler import KSampler
    from nodes.defs.text import CLIPTextEncode
    from nodes.diffusion.model_handle import DiffusionModel
    from nodes.types import Latent
    from tests.nodes.helpers_models import make_ctx

    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    loaded = CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=tiny_sd15_name))
    cond = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(clip=loaded.CLIP, text="a cat")).CONDITIONING
    seen: list[float] = []
    forward = DiffusionModel.forward

    def spy(self, store, x_in, timesteps, *args, **kwargs):
        seen.extend(timesteps.tolist())
        return forward(self, store, x_in, timesteps, *args, **kwargs)

    monkeypatch.setattr(DiffusionModel, "forward", spy)

    def run(sampling: str) -> torch.Tensor:
        seen.clear()
        model = (
            ModelSamplingDiscrete()
            .run(ctx, ModelSamplingDiscrete.Inputs(model=loaded.MODEL, sampling=sampling))
            .MODEL
        )
        inputs = KSampler.Inputs(
            model=model,
            seed=3,
            steps=4,
            cfg=1.0,
            sampler_name="lcm",
            scheduler="sgm_uniform",
            positive=cond,
            negative=cond,
            latent_image=Latent(samples=torch.zeros(1, 4, 8, 8)),
            denoise=1.0,
        )
        return KSampler().run(ctx, inputs).LATENT.samples

    lcm = run("lcm")
    # LCM models were distilled on every 20th step ending at 999: 999, 979, ..., 19.
    assert len(seen) == 4 and seen[0] == 999 and all(t % 20 == 19 for t in seen)
    eps = run("eps")
    assert seen[0] == 999 and not all(t % 20 == 19 for t in seen)
    assert not torch.allclose(lcm, eps)
