"""unCLIP: SD2.1 unCLIP checkpoints, the noise-augmented image conditioning (ComfyUI's numbers), the nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.model_store import ModelStore
from nodes.defs.unclip import unCLIPConditioning, with_unclip_image
from nodes.diffusion.loader import inspect_checkpoint
from nodes.diffusion.make_checkpoint import checkpoint_layout
from nodes.diffusion.unclip import UnclipImage, unclip_adm
from nodes.types import ClipVisionOutput, CondEntry, Conditioning

REFERENCE = Path(__file__).parent / "data" / "unclip_reference" / "adm_reference.safetensors"

# Facts from the header of sd21-unclip-h.ckpt (stabilityai/stable-diffusion-2-1-unclip).
UNCLIP_H = {
    "model.diffusion_model.label_emb.0.0.weight": (1280, 2048),
    "model.diffusion_model.label_emb.0.2.weight": (1280, 1280),
    "embedder.model.visual.proj": (1280, 1024),
    "embedder.model.visual.conv1.weight": (1280, 3, 14, 14),
    "embedder.model.visual.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
    "cond_stage_model.model.transformer.resblocks.23.mlp.c_fc.weight": (4096, 1024),
}


def test_unclip_full_layout_has_the_published_names_and_shapes():
    layout = checkpoint_layout("sd2-unclip", "full")
    for key, shape in UNCLIP_H.items():
        assert tuple(layout[key]) == shape, key


def test_unclip_checkpoint_is_detected_as_its_own_v_prediction_family(tiny_checkpoint_paths):
    info = inspect_checkpoint(tiny_checkpoint_paths["sd2-unclip"])
    assert (info.family, info.prediction) == ("sd2-unclip", "v")
    assert inspect_checkpoint(tiny_checkpoint_paths["sd2-v"]).family == "sd2-v"


@pytest.mark.parametrize("case", range(4))
def test_unclip_adm_matches_comfyui(case: int):
    ref = load_file(str(REFERENCE))
    strength, level, seed = ref[f"case_{case}"].tolist()
    image = UnclipImage(ref["image_embeds"], strength, level)
    adm = unclip_adm([image], int(seed), 1024)
    torch.testing.assert_close(adm, ref[f"adm_{case}"], rtol=0, atol=1e-6)


def test_unclip_adm_without_images_is_zero_and_merges_several():
    assert torch.equal(unclip_adm([], 3, 8), torch.zeros(1, 16))
    a = UnclipImage(torch.ones(2, 8), 1.0, 0.0)  # two images in one output: two embeddings
    merged = unclip_adm([a], 3, 8)
    assert merged.shape == (1, 16)
    assert not torch.equal(merged, unclip_adm([UnclipImage(torch.ones(1, 8), 1.0, 0.0)], 3, 8))


def _output(embeds: torch.Tensor) -> ClipVisionOutput:
    hidden = torch.zeros(embeds.shape[0], 2, 4)
    return ClipVisionOutput(last_hidden_state=hidden, penultimate_hidden_states=hidden, image_embeds=embeds)


def test_unclip_conditioning_appends_to_every_entry_and_strength_zero_is_a_no_op():
    cond = Conditioning(
        entries=(CondEntry(embeds=torch.zeros(1, 77, 8)), CondEntry(embeds=torch.ones(1, 77, 8)))
    )
    node = unCLIPConditioning()
    same = node.run(
        None, node.Inputs(conditioning=cond, clip_vision_output=_output(torch.ones(1, 4)), strength=0.0)
    )  # type: ignore[arg-type]
    assert same.CONDITIONING is cond
    out = node.run(
        None,  # type: ignore[arg-type]
        node.Inputs(
            conditioning=cond,
            clip_vision_output=_output(torch.ones(1, 4)),
            strength=0.5,
            noise_augmentation=0.2,
        ),
    ).CONDITIONING
    twice = with_unclip_image(out, UnclipImage(torch.zeros(1, 4), 1.0, 0.0))
    assert [len(e.extras["unclip"]) for e in twice.entries] == [2, 2]
    assert twice.entries[0].extras["unclip"][0].strength == 0.5
    assert "unclip" not in cond.entries[0].extras  # the input is never changed


def test_unclip_image_prompt_changes_the_sample(tiny_models_dir: Path, tmp_path: Path):
    from nodes.defs.clip_vision import CLIPVisionEncode
    from nodes.defs.sampler import KSampler
    from nodes.defs.text import CLIPTextEncode
    from nodes.defs.unclip import unCLIPCheckpointLoader
    from nodes.types import Image, Latent
    from tests.nodes.helpers_models import make_ctx

    ctx = make_ctx(tiny_models_dir, ModelStore(), tmp_path)
    loader = unCLIPCheckpointLoader()
    loaded = loader.run(ctx, loader.Inputs(ckpt_name="tiny-sd2-unclip.safetensors"))
    enc = CLIPVisionEncode()
    pixels = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    embeds = enc.run(
        ctx, enc.Inputs(clip_vision=loaded.CLIP_VISION, image=Image(pixels=pixels), crop="center")
    )
    text = CLIPTextEncode()
    plain = text.run(ctx, text.Inputs(text="a cat", clip=loaded.CLIP)).CONDITIONING
    negative = text.run(ctx, text.Inputs(text="", clip=loaded.CLIP)).CONDITIONING
    node = unCLIPConditioning()
    prompted = node.run(
        ctx,
        node.Inputs(conditioning=plain, clip_vision_output=embeds.CLIP_VISION_OUTPUT, noise_augmentation=0.1),
    ).CONDITIONING
    sampler = KSampler()
    latent = Latent(samples=torch.zeros(1, 4, 8, 8))

    def sample(positive: Conditioning, seed: int) -> torch.Tensor:
        args = dict(model=loaded.MODEL, seed=seed, steps=2, cfg=5.0, sampler_name="euler", scheduler="normal")
        inputs = sampler.Inputs(
            positive=positive, negative=negative, latent_image=latent, denoise=1.0, **args
        )
        return sampler.run(ctx, inputs).LATENT.samples

    base, with_image = sample(plain, 1), sample(prompted, 1)
    assert not torch.allclose(base, with_image)
    assert torch.equal(with_image, sample(prompted, 1))  # the embedding noise comes from the seed
