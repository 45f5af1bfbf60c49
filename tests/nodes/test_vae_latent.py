"""EmptyLatentImage, VAE round trip, tiled decode, VAELoader and LoRA patching on tiny models."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodes.defs.latent import EmptyLatentImage
from nodes.defs.loaders import CheckpointLoaderSimple, LoraLoader, LoraLoaderModelOnly, VAELoader
from nodes.defs.vae import VAEDecode, VAEDecodeTiled, VAEEncode
from nodes.diffusion import loader
from nodes.diffusion import vae as vae_ops
from nodes.types import Image, Latent
from tests.nodes.helpers_models import make_ctx


@pytest.fixture
def ctx(tiny_models_dir, model_store, tmp_path):
    return make_ctx(tiny_models_dir, model_store, tmp_path)


def _load(ctx, name="tiny-sd15.safetensors"):
    return CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=name))


def test_empty_latent_image_shape_and_limits(ctx):
    out = EmptyLatentImage().run(ctx, EmptyLatentImage.Inputs(width=512, height=256, batch_size=3)).LATENT
    assert out.samples.shape == (3, 4, 32, 64) and out.samples.abs().sum() == 0
    with pytest.raises(ValueError):
        EmptyLatentImage.Inputs(width=8, height=64, batch_size=1)


def test_vae_round_trip_shapes_and_range(ctx):
    vae = _load(ctx).VAE
    pixels = torch.rand(2, 64, 72, 3)
    latent = VAEEncode().run(ctx, VAEEncode.Inputs(pixels=Image(pixels=pixels), vae=vae)).LATENT
    assert latent.samples.shape == (2, 4, 8, 9)
    image = VAEDecode().run(ctx, VAEDecode.Inputs(samples=latent, vae=vae)).IMAGE.pixels
    assert image.shape == (2, 64, 72, 3) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_tiled_decode_matches_untiled(ctx):
    vae = _load(ctx).VAE
    latents = Latent(samples=torch.randn(1, 4, 24, 24))
    full = VAEDecode().run(ctx, VAEDecode.Inputs(samples=latents, vae=vae)).IMAGE.pixels
    one_tile = VAEDecodeTiled().run(
        ctx, VAEDecodeTiled.Inputs(samples=latents, vae=vae, tile_size=256, overlap=64)
    )
    torch.testing.assert_close(one_tile.IMAGE.pixels, full, rtol=0, atol=1e-5)
    tiled = VAEDecodeTiled().run(
        ctx, VAEDecodeTiled.Inputs(samples=latents, vae=vae, tile_size=128, overlap=32)
    )
    assert tiled.IMAGE.pixels.shape == full.shape
    assert float((tiled.IMAGE.pixels - full).abs().mean()) < 0.05


def test_decode_falls_back_to_tiles_on_oom(ctx, monkeypatch):
    vae = _load(ctx).VAE.load(ctx.models)
    real = vae_ops._decode
    calls = []

    def flaky(module, latents):
        calls.append(latents.shape[-1])
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(module, latents)

    monkeypatch.setattr(vae_ops, "_decode", flaky)
    image = vae_ops.decode(vae, torch.randn(1, 4, 8, 8))
    assert image.shape == (1, 64, 64, 3) and len(calls) == 2


def test_vae_loader_loads_standalone_file(ctx):
    vae = VAELoader().run(ctx, VAELoader.Inputs(vae_name="tiny-vae.safetensors")).VAE
    image = VAEDecode().run(ctx, VAEDecode.Inputs(samples=Latent(samples=torch.zeros(1, 4, 4, 4)), vae=vae))
    assert image.IMAGE.pixels.shape == (1, 32, 32, 3)


def _kohya_lora(path, names, rank=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, (n_out, n_in) in names.items():
        sd[f"{name}.lora_down.weight"] = torch.randn(rank, n_in, generator=g)
        sd[f"{name}.lora_up.weight"] = torch.randn(n_out, rank, generator=g)
        sd[f"{name}.alpha"] = torch.tensor(float(rank))
    save_file(sd, path)


def test_lora_patches_copy_and_leaves_base_untouched(ctx, tiny_models_dir):
    out = _load(ctx)
    names = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (32, 32),
        "lora_unet_output_blocks_11_1_transformer_blocks_0_attn2_to_k": (32, 64),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (64, 64),
    }
    _kohya_lora(tiny_models_dir / "loras" / "k.safetensors", names)
    base_unet = out.MODEL.load(ctx.models)
    before = base_unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight.clone()
    patched = LoraLoader().run(
        ctx,
        LoraLoader.Inputs(
            model=out.MODEL, clip=out.CLIP, lora_name="k.safetensors", strength_model=0.5, strength_clip=1.0
        ),
    )
    unet = patched.MODEL.load(ctx.models)
    w = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    assert not torch.allclose(w, before)
    assert torch.equal(base_unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight, before)
    assert unet.up_blocks[3].attentions[2].transformer_blocks[0].attn2.to_k.weight.data_ptr() != (
        base_unet.up_blocks[3].attentions[2].transformer_blocks[0].attn2.to_k.weight.data_ptr()
    )
    assert unet.conv_in.weight.data_ptr() == base_unet.conv_in.weight.data_ptr()
    clip = patched.CLIP.load(ctx.models)
    base_clip = out.CLIP.load(ctx.models)
    assert not torch.allclose(
        clip.encoders["clip_l"].encoder.layers[0].self_attn.q_proj.weight,
        base_clip.encoders["clip_l"].encoder.layers[0].self_attn.q_proj.weight,
    )


def test_lora_for_wrong_family_is_refused(ctx, tiny_models_dir):
    from nodes.diffusion.lora import LoraError

    out = _load(ctx)
    _kohya_lora(tiny_models_dir / "loras" / "xl.safetensors", {"lora_unet_something_only_in_xl": (4, 4)})
    with pytest.raises(LoraError, match="another model family"):
        LoraLoaderModelOnly().run(
            ctx, LoraLoaderModelOnly.Inputs(model=out.MODEL, lora_name="xl.safetensors")
        )


def test_checkpoint_loader_reads_file_once_per_store(ctx, monkeypatch):
    reads = []
    real = loader.read_weights
    monkeypatch.setattr(loader, "read_weights", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    _load(ctx, "tiny-sd2.safetensors")
    _load(ctx, "tiny-sd2.safetensors")
    assert len(reads) == 2  # one 1-tensor probe for v-prediction, one full read


def _own_vae_dir(tmp_path, model_store):
    (tmp_path / "models" / "vae").mkdir(parents=True)
    return tmp_path / "models" / "vae", make_ctx(tmp_path / "models", model_store, tmp_path)


def test_vae_loader_family_comes_from_weights_not_file_name(tiny_models_dir, model_store, tmp_path):
    from nodes.diffusion.checkpoint_io import read_weights

    vae_dir, ctx = _own_vae_dir(tmp_path, model_store)
    weights = read_weights(tiny_models_dir / "vae" / "tiny-vae.safetensors")
    save_file(weights, vae_dir / "my-sdxl-vae.safetensors")
    save_file(
        weights,
        vae_dir / "plain.safetensors",
        metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"},
    )
    named_xl = VAELoader().run(ctx, VAELoader.Inputs(vae_name="my-sdxl-vae.safetensors")).VAE
    tagged_xl = VAELoader().run(ctx, VAELoader.Inputs(vae_name="plain.safetensors")).VAE
    assert named_xl.family == "sd15" and tagged_xl.family == "sdxl"


def test_vae_loader_names_unsupported_vae_layouts(model_store, tmp_path):
    from nodes.diffusion.checkpoint_io import CheckpointFormatError

    vae_dir, ctx = _own_vae_dir(tmp_path, model_store)
    save_file(
        {
            "decoder.conv_in.weight": torch.zeros(8, 16, 3, 3),
            "post_quant_conv.weight": torch.zeros(16, 16, 1, 1),
        },
        vae_dir / "flux-ae.safetensors",
    )
    save_file({"decoder.up_blocks.0.resnets.0.conv1.weight": torch.zeros(1)}, vae_dir / "no-vae.safetensors")
    with pytest.raises(CheckpointFormatError, match="flux-ae.safetensors is a VAE with 16 latent channels"):
        VAELoader().run(ctx, VAELoader.Inputs(vae_name="flux-ae.safetensors"))
    with pytest.raises(CheckpointFormatError, match="no-vae.safetensors is not a VAE: expected"):
        VAELoader().run(ctx, VAELoader.Inputs(vae_name="no-vae.safetensors"))


_PRE_0_14_ATTENTION = {
    ".to_q.": ".query.",
    ".to_k.": ".key.",
    ".to_v.": ".value.",
    ".to_out.0.": ".proj_attn.",
}


def _old_attention_names(key: str) -> str:
    for new, old in _PRE_0_14_ATTENTION.items():
        key = key.replace(new, old)
    return key


def test_vae_loader_takes_diffusers_layout_files(tiny_models_dir, model_store, tmp_path):
    """A diffusers `diffusion_pytorch_model.safetensors` VAE decodes exactly like its LDM original."""
    from nodes.diffusion.checkpoint_io import read_weights

    vae_dir, ctx = _own_vae_dir(tmp_path, model_store)
    save_file(read_weights(tiny_models_dir / "vae" / "tiny-vae.safetensors"), vae_dir / "ldm.safetensors")
    ldm = VAELoader().run(ctx, VAELoader.Inputs(vae_name="ldm.safetensors")).VAE
    state = {k: v.contiguous() for k, v in ldm.load(model_store).state_dict().items()}
    assert any(k.startswith("decoder.up_blocks.") for k in state)
    save_file(state, vae_dir / "diffusion_pytorch_model.safetensors")
    save_file({_old_attention_names(k): v for k, v in state.items()}, vae_dir / "old-diffusers.safetensors")
    latent = Latent(samples=torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3)))
    decoded = {}
    for name in ("ldm.safetensors", "diffusion_pytorch_model.safetensors", "old-diffusers.safetensors"):
        vae = VAELoader().run(ctx, VAELoader.Inputs(vae_name=name)).VAE
        decoded[name] = VAEDecode().run(ctx, VAEDecode.Inputs(samples=latent, vae=vae)).IMAGE.pixels
    assert torch.equal(decoded["ldm.safetensors"], decoded["diffusion_pytorch_model.safetensors"])
    assert torch.equal(decoded["ldm.safetensors"], decoded["old-diffusers.safetensors"])
