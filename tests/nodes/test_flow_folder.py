"""FLUX.1 and SD3.5 diffusers folders: the same workflow on a folder and on its single files gives the same latents.

The folders come from `make-checkpoint --kind diffusers` (make_flow_folder), which converts the very
values the single files hold; every comparison here is exact (torch.equal).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from transformers import CLIPTextModel, T5EncoderModel

from engine import ModelPaths
from nodes.defs.clip_loaders import CLIPLoader, DualCLIPLoader, TripleCLIPLoader
from nodes.defs.flux import EmptySD3LatentImage, FluxGuidance
from nodes.defs.loaders import CheckpointLoaderSimple, LoraLoader, VAELoader
from nodes.defs.sampler import KSampler
from nodes.defs.text import CLIPTextEncode
from nodes.defs.unet_loader import UNETLoader
from nodes.defs.vae import VAEDecode
from nodes.diffusion import make_checkpoint
from nodes.diffusion.checkpoint_io import CheckpointFormatError, PickleRefusedError
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.loader import inspect_checkpoint
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_flow_folder import make_flow_folder
from nodes.diffusion.make_lora import make_lora_file
from nodes.diffusion.make_text_encoder import make_text_encoder
from nodes.diffusion.unet_file import inspect_diffusion_model
from tests.nodes.helpers_models import make_ctx

SEED = 0


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Single files and the folders made from the same values, in ComfyUI's model folders."""
    root = tmp_path_factory.mktemp("flow-folder-models")
    for folder in ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras"):
        (root / folder).mkdir()
    make_flux_file("flux1-dev", "tiny", SEED, root / "diffusion_models" / "flux1-dev.safetensors")
    make_flux_file("flux-ae", "tiny", SEED, root / "vae" / "ae.safetensors")
    for kind in ("clip_l", "clip_g", "t5xxl"):
        make_text_encoder(kind, "tiny", SEED, root / "text_encoders" / f"{kind}.safetensors", "fp16")
    make_sd3_checkpoint(
        "sd3.5-medium", "tiny", SEED, root / "checkpoints" / "sd35m.safetensors", text_encoders=True
    )
    make_flow_folder("flux1-dev", "tiny", SEED, root / "checkpoints" / "FLUX.1-dev")
    make_flow_folder("sd3.5-medium", "tiny", SEED, root / "checkpoints" / "sd3.5-medium")
    make_flow_folder("flux1-schnell", "tiny", SEED, root / "diffusion_models" / "FLUX.1-schnell", shards=3)
    shutil.copytree(
        root / "checkpoints" / "FLUX.1-dev" / "transformer",
        root / "diffusion_models" / "flux-dev-transformer",
    )
    shutil.copytree(
        root / "checkpoints" / "FLUX.1-dev" / "text_encoder_2", root / "text_encoders" / "t5-folder"
    )
    shutil.copytree(
        root / "checkpoints" / "sd3.5-medium" / "transformer", root / "diffusion_models" / "sd35m-transformer"
    )
    shutil.copytree(root / "checkpoints" / "FLUX.1-dev" / "vae", root / "vae" / "flux-vae-folder")
    for layout in ("flux-bfl", "flux-kohya", "sd3-kohya"):
        make_lora_file(layout, "tiny", 7, root / "loras" / f"{layout}.safetensors", text_encoders=True)
    return root


@pytest.fixture
def ctx(models, model_store, tmp_path):
    return make_ctx(models, model_store, tmp_path)


def _checkpoint(ctx, name):
    return CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=name))


def _sample(ctx, model, clip, vae, cfg=1.0, guidance=None, negative=""):
    """Prompt -> 2 euler steps on a 64x64 latent -> (latent, pixels)."""
    pos = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="a red fox in snow", clip=clip)).CONDITIONING
    if guidance is not None:
        pos = FluxGuidance().run(ctx, FluxGuidance.Inputs(conditioning=pos, guidance=guidance)).CONDITIONING
    neg = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text=negative, clip=clip)).CONDITIONING
    empty = EmptySD3LatentImage().run(ctx, EmptySD3LatentImage.Inputs(width=64, height=64, batch_size=1))
    inputs = KSampler.Inputs(
        model=model, seed=3, steps=2, cfg=cfg, positive=pos, negative=neg, latent_image=empty.LATENT
    )
    latent = KSampler().run(ctx, inputs).LATENT
    pixels = VAEDecode().run(ctx, VAEDecode.Inputs(samples=latent, vae=vae)).IMAGE.pixels
    return latent.samples, pixels


def _clip(ctx, names: list[str], clip_type: str):
    """The CLIP of the loader taking len(names) files."""
    node = {1: CLIPLoader, 2: DualCLIPLoader, 3: TripleCLIPLoader}[len(names)]
    fields = (
        {"clip_name": names[0]} if len(names) == 1 else {f"clip_name{i}": n for i, n in enumerate(names, 1)}
    )
    if len(names) < 3:
        fields["type"] = clip_type
    return node().run(ctx, node.Inputs(**fields)).CLIP


def _flux_files(ctx, t5: str = "t5xxl.safetensors"):
    model = UNETLoader().run(ctx, UNETLoader.Inputs(unet_name="flux1-dev.safetensors")).MODEL
    clip = _clip(ctx, ["clip_l.safetensors", t5], "flux")
    vae = VAELoader().run(ctx, VAELoader.Inputs(vae_name="ae.safetensors")).VAE
    return model, clip, vae


def test_flow_folder_listed_as_one_model_per_folder(models):
    paths = ModelPaths(models)
    assert {"FLUX.1-dev", "sd3.5-medium", "sd35m.safetensors"} <= set(paths.list("checkpoints"))
    assert not [name for name in paths.list("checkpoints") if "/" in name]  # parts are not models
    assert {"FLUX.1-schnell", "flux-dev-transformer", "sd35m-transformer", "flux1-dev.safetensors"} == set(
        paths.list("diffusion_models")
    )
    assert "t5-folder" in paths.list("text_encoders")
    assert "flux-vae-folder" in paths.list("vae")


def test_flow_folder_family_read_from_the_folder(models):
    dev = inspect_checkpoint(models / "checkpoints" / "FLUX.1-dev")
    sd35 = inspect_checkpoint(models / "checkpoints" / "sd3.5-medium")
    schnell = inspect_checkpoint(models / "diffusion_models" / "FLUX.1-schnell")
    assert (dev.family, dev.components, dev.prediction) == ("flux-dev", ("unet", "clip", "vae"), "flow")
    assert (sd35.family, sd35.components) == ("sd3", ("unet", "clip", "vae"))
    assert schnell.family == "flux-schnell"


def test_flow_folder_flux_dev_gives_the_single_files_latents(ctx):
    folder = _checkpoint(ctx, "FLUX.1-dev")
    want = _sample(ctx, *_flux_files(ctx), guidance=3.5)
    got = _sample(ctx, folder.MODEL, folder.CLIP, folder.VAE, guidance=3.5)
    assert folder.MODEL.flow == _flux_files(ctx)[0].flow
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[0].abs().sum() > 0
    linears = {
        m.weight.dtype for m in folder.MODEL.load(ctx.models).modules() if isinstance(m, torch.nn.Linear)
    }
    assert linears == {torch.bfloat16}  # kept as stored, widened per layer like the single file's


def test_flow_folder_written_by_the_make_checkpoint_command(tmp_path, capsys):
    code = make_checkpoint.main(
        ["--arch", "flux1-schnell", "--kind", "diffusers", "--shards", "1", str(tmp_path / "s")]
    )
    assert code == 0
    assert "diffusers folder" in capsys.readouterr().out
    assert (tmp_path / "s" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert inspect_checkpoint(tmp_path / "s").family == "flux-schnell"
    with pytest.raises(SystemExit):
        make_checkpoint.main(["--arch", "sd15", "--kind", "diffusers", str(tmp_path / "x")])


def test_flow_folder_sd35_gives_the_single_files_latents(ctx):
    single = _checkpoint(ctx, "sd35m.safetensors")
    folder = _checkpoint(ctx, "sd3.5-medium")
    want = _sample(ctx, single.MODEL, single.CLIP, single.VAE, cfg=2.0, negative="blurry")
    got = _sample(ctx, folder.MODEL, folder.CLIP, folder.VAE, cfg=2.0, negative="blurry")
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_flow_folder_component_loaders_take_folders(ctx):
    model, clip, vae = _flux_files(ctx)
    want = _sample(ctx, model, clip, vae)
    pipeline = UNETLoader().run(ctx, UNETLoader.Inputs(unet_name="flux-dev-transformer")).MODEL
    t5 = _flux_files(ctx, "t5-folder")[1]
    vae_folder = VAELoader().run(ctx, VAELoader.Inputs(vae_name="flux-vae-folder")).VAE
    got = _sample(ctx, pipeline, t5, vae_folder)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_flow_folder_unet_loader_takes_a_pipeline_folder(ctx):
    model = UNETLoader().run(ctx, UNETLoader.Inputs(unet_name="FLUX.1-schnell")).MODEL
    assert model.family == "flux-schnell"
    single = _checkpoint(ctx, "sd35m.safetensors")
    mmdit = UNETLoader().run(ctx, UNETLoader.Inputs(unet_name="sd35m-transformer")).MODEL
    want = _sample(ctx, single.MODEL, single.CLIP, single.VAE, cfg=2.0)
    assert torch.equal(_sample(ctx, mmdit, single.CLIP, single.VAE, cfg=2.0)[0], want[0])
    t5 = _clip(ctx, ["t5-folder"], "sd3")
    assert t5.recipe.family == "sd3"
    triple = _clip(ctx, ["clip_l.safetensors", "clip_g.safetensors", "t5-folder"], "sd3")
    cond = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="a cat", clip=triple)).CONDITIONING
    assert cond.entries[0].embeds.shape[-1] == 128


@pytest.mark.parametrize(
    ("single_name", "folder_name", "lora"),
    [
        ("flux1-dev.safetensors", "FLUX.1-dev", "flux-bfl.safetensors"),
        ("flux1-dev.safetensors", "FLUX.1-dev", "flux-kohya.safetensors"),
        ("sd35m.safetensors", "sd3.5-medium", "sd3-kohya.safetensors"),
    ],
)
def test_flow_folder_lora_patches_the_weights_the_single_file_gets(ctx, single_name, folder_name, lora):
    if single_name.startswith("flux"):
        base = UNETLoader().run(ctx, UNETLoader.Inputs(unet_name=single_name)).MODEL
        clip = _checkpoint(ctx, folder_name).CLIP
    else:
        single = _checkpoint(ctx, single_name)
        base, clip = single.MODEL, single.CLIP
    folder = _checkpoint(ctx, folder_name)
    outs = [
        LoraLoader()
        .run(
            ctx,
            LoraLoader.Inputs(model=m, clip=clip, lora_name=lora, strength_model=0.8, strength_clip=1.0),
        )
        .MODEL
        for m in (base, folder.MODEL)
    ]
    weights = [dict(m.load(ctx.models).named_parameters()) for m in outs]
    plain = dict(folder.MODEL.load(ctx.models).named_parameters())
    assert weights[0].keys() == weights[1].keys()
    changed = [k for k in weights[1] if not torch.equal(weights[1][k], plain[k])]
    assert changed, "the LoRA changed nothing on the folder model"
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_flow_folder_saved_by_diffusers_and_transformers_loads_alike(models, ctx):
    """The parts re-saved by the libraries that write the hub's folders (their naming and sharding)."""
    source = models / "checkpoints" / "FLUX.1-dev"
    out = models / "checkpoints" / "FLUX.1-dev-resaved"
    shutil.rmtree(out, ignore_errors=True)
    transformer = FluxTransformer2DModel.from_pretrained(source / "transformer", torch_dtype=torch.bfloat16)
    transformer.save_pretrained(out / "transformer", max_shard_size="2MB")
    AutoencoderKL.from_pretrained(source / "vae").save_pretrained(out / "vae")
    CLIPTextModel.from_pretrained(source / "text_encoder", dtype=torch.float16).save_pretrained(
        out / "text_encoder"
    )
    t5 = T5EncoderModel.from_pretrained(source / "text_encoder_2", dtype=torch.float16)
    t5.save_pretrained(out / "text_encoder_2", max_shard_size="4MB")
    shutil.copy(source / "model_index.json", out / "model_index.json")
    assert len(list((out / "transformer").glob("*.safetensors"))) > 2
    folder = _checkpoint(ctx, "FLUX.1-dev-resaved")
    want = _sample(ctx, *_flux_files(ctx), guidance=3.5)
    got = _sample(ctx, folder.MODEL, folder.CLIP, folder.VAE, guidance=3.5)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def _broken(models: Path, tmp_path: Path, name: str = "FLUX.1-dev") -> Path:
    target = tmp_path / "checkpoints" / name
    shutil.copytree(models / "checkpoints" / name, target)
    return target


@pytest.mark.parametrize("name", ["FLUX.1-dev", "sd3.5-medium"])
def test_flow_folder_missing_shard_is_refused_by_name(models, tmp_path, name):
    folder = _broken(models, tmp_path, name)
    (folder / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(
        CheckpointFormatError, match=f"{name}/transformer.*00002-of-00002.safetensors is missing"
    ):
        inspect_checkpoint(folder)


def test_flow_folder_missing_part_is_refused_by_name(models, tmp_path):
    folder = _broken(models, tmp_path, "sd3.5-medium")
    shutil.rmtree(folder / "text_encoder_3")
    with pytest.raises(CheckpointFormatError, match="sd3.5-medium: model_index.json lists text_encoder_3/"):
        inspect_checkpoint(folder)


def test_flow_folder_config_that_contradicts_the_weights_is_refused(models, tmp_path, model_store):
    folder = _broken(models, tmp_path)
    config = folder / "transformer" / "config.json"
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "guidance_embeds": False}))
    with pytest.raises(CheckpointFormatError, match="guidance_embeds=False but the weights hold"):
        inspect_checkpoint(folder)
    config.write_text(json.dumps({**cfg, "num_layers": 3}))
    ctx = make_ctx(tmp_path, model_store, tmp_path)
    with pytest.raises(
        CheckpointFormatError, match="FLUX.1-dev/transformer: config.json and the weights do not"
    ):
        _checkpoint(ctx, "FLUX.1-dev")


def test_flow_folder_pickle_only_part_is_refused(models, tmp_path, monkeypatch):
    folder = _broken(models, tmp_path)
    vae = folder / "vae"
    (vae / "diffusion_pytorch_model.safetensors").rename(vae / "diffusion_pytorch_model.bin")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json").unlink()
    for shard in (folder / "transformer").glob("*.safetensors"):
        shard.rename(shard.with_suffix(".bin"))
    monkeypatch.delenv("DIFFGRAPH_ALLOW_PICKLE", raising=False)
    with pytest.raises(PickleRefusedError, match="FLUX.1-dev/transformer holds only pickle weights"):
        inspect_checkpoint(folder)


def test_flow_folder_without_text_encoders_names_the_loaders_to_use(models, tmp_path, model_store):
    folder = _broken(models, tmp_path, "sd3.5-medium")
    index = json.loads((folder / "model_index.json").read_text())
    for sub in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        index[sub] = [None, None]
        shutil.rmtree(folder / sub)
    (folder / "model_index.json").write_text(json.dumps(index))
    ctx = make_ctx(tmp_path, model_store, tmp_path)
    out = _checkpoint(ctx, "sd3.5-medium")
    assert out.MODEL.family == "sd3"
    with pytest.raises(CheckpointFormatError, match="sd3.5-medium holds no text encoders.*TripleCLIPLoader"):
        CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="a cat", clip=out.CLIP))


def test_flow_folder_fp8_weight_dtype_narrows_like_the_file(ctx):
    _, clip, vae = _flux_files(ctx)
    results = [
        _sample(
            ctx,
            UNETLoader().run(ctx, UNETLoader.Inputs(unet_name=n, weight_dtype="fp8_e4m3fn")).MODEL,
            clip,
            vae,
        )
        for n in ("flux1-dev.safetensors", "flux-dev-transformer")
    ]
    assert torch.equal(results[0][0], results[1][0])
    assert not torch.equal(results[0][0], _sample(ctx, *_flux_files(ctx))[0])


def test_flow_folder_fill_pipeline_is_flux_fill(tmp_path):
    folder = make_flow_folder("flux1-fill-dev", "tiny", SEED, tmp_path / "FLUX.1-Fill-dev")
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "FluxFillPipeline"
    assert inspect_checkpoint(folder).family == "flux-fill"


@pytest.mark.parametrize(
    ("folder_name", "lora"), [("FLUX.1-dev", "flux-kohya"), ("sd3.5-medium", "sd3-kohya")]
)
def test_flow_folder_lora_patches_its_text_encoders_like_the_files(ctx, folder_name, lora):
    if folder_name.startswith("FLUX"):
        files_clip = _flux_files(ctx)[1]
    else:
        files_clip = _clip(ctx, ["clip_l.safetensors", "clip_g.safetensors", "t5xxl.safetensors"], "sd3")
    folder = _checkpoint(ctx, folder_name)
    conds = []
    for clip in (files_clip, folder.CLIP, folder.CLIP):
        if len(conds) < 2:
            clip = (
                LoraLoader()
                .run(
                    ctx,
                    LoraLoader.Inputs(
                        model=folder.MODEL,
                        clip=clip,
                        lora_name=f"{lora}.safetensors",
                        strength_model=1.0,
                        strength_clip=1.0,
                    ),
                )
                .CLIP
            )
        cond = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="a red fox", clip=clip)).CONDITIONING
        conds.append(cond.entries[0])
    assert torch.equal(conds[0].embeds, conds[1].embeds) and torch.equal(conds[0].pooled, conds[1].pooled)
    assert not torch.equal(conds[1].embeds, conds[2].embeds)  # the LoRA reached the folder's encoders


def test_flow_folder_unet_pipeline_under_diffusion_models_is_refused(tmp_path):
    folder = tmp_path / "sd15-pipeline"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(
        CheckpointFormatError, match="sd15-pipeline is a diffusers pipeline without a transformer"
    ):
        inspect_diffusion_model(folder)


def _all_in_one_flux(models: Path, name: str, extra: tuple[str, ...] = ()) -> str:
    """An all-in-one FLUX dev file (as the published fp8 checkpoints are laid out) from the single files."""
    from safetensors.torch import load_file, save_file

    parts = {
        "model.diffusion_model.": models / "diffusion_models" / "flux1-dev.safetensors",
        "vae.": models / "vae" / "ae.safetensors",
    }
    parts.update(
        {
            f"text_encoders.{kind}.transformer.": models / "text_encoders" / f"{kind}.safetensors"
            for kind in ("clip_l", "t5xxl", *extra)
        }
    )
    tensors = {prefix + k: v for prefix, path in parts.items() for k, v in load_file(str(path)).items()}
    save_file(tensors, str(models / "checkpoints" / name))
    return name


def test_flow_all_in_one_flux_file_gives_the_single_files_latents_and_lora(models, ctx):
    folder = _checkpoint(ctx, _all_in_one_flux(models, "flux1-dev-aio.safetensors"))
    model, clip, vae = _flux_files(ctx)
    want = _sample(ctx, model, clip, vae, guidance=3.5)
    got = _sample(ctx, folder.MODEL, folder.CLIP, folder.VAE, guidance=3.5)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    conds = []
    for each in (clip, folder.CLIP):
        inputs = LoraLoader.Inputs(
            model=folder.MODEL,
            clip=each,
            lora_name="flux-kohya.safetensors",
            strength_model=1.0,
            strength_clip=1.0,
        )
        patched = LoraLoader().run(ctx, inputs).CLIP
        text = CLIPTextEncode.Inputs(text="a red fox", clip=patched)
        conds.append(CLIPTextEncode().run(ctx, text).CONDITIONING.entries[0])
    assert torch.equal(conds[0].embeds, conds[1].embeds) and torch.equal(conds[0].pooled, conds[1].pooled)


def test_flow_all_in_one_flux_file_with_an_sd3_encoder_is_refused(models, ctx):
    name = _all_in_one_flux(models, "flux1-dev-odd.safetensors", ("clip_g",))
    with pytest.raises(CheckpointFormatError, match="holds clip_g, which a flux model does not use"):
        _checkpoint(ctx, name)


def test_flow_all_in_one_flux_clip_reloads_on_its_own(models):
    """After an eviction the CLIP of an all-in-one FLUX file is rebuilt alone: the same "flux" text stack."""
    from nodes.diffusion.flow_text import FlowTextStack
    from nodes.diffusion.loader import load_component
    from nodes.diffusion.recipe import ComponentRecipe

    path = models / "checkpoints" / _all_in_one_flux(models, "flux1-dev-reload.safetensors")
    stack = load_component(ComponentRecipe(str(path), "flux", "clip"), torch.float32)
    assert isinstance(stack, FlowTextStack) and stack.family == "flux"
    assert sorted(stack.encoders) == ["clip_l", "t5xxl"]
    # T5 keeps the file's fp16 (widened per layer), not a float32 copy.
    assert {p.dtype for p in stack.encoders["t5xxl"].parameters() if p.ndim == 2} == {torch.float16}
