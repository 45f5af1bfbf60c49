"""Bench: per-step sampling time and peak memory of FLUX / SD3.5 models, diffgraph against diffusers' pipelines.

    python bench/sampling.py --family flux --models-dir MODELS --out bench/results/sampling_flux.json
    python bench/sampling.py --family sd3 --models-dir MODELS --out bench/results/sampling_sd3.json
        [--size 256] [--steps 2] [--rounds 2] [--flow-file ROLE=NAME ...]

MODELS (or $DIFFGRAPH_FLOW_MODELS) is a ComfyUI-style models folder: FLUX reads
diffusion_models/ + text_encoders/ (CLIP-L, T5-XXL); SD3 reads a checkpoint from checkpoints/ and the
CLIP-L, CLIP-G and T5-XXL files from text_encoders/. The default names are the reduced-depth
full-width reference files; `--flow-file unet=flux1-dev-fp8.safetensors` (roles unet, ckpt, clip_l,
clip_g, t5) names others; `t5=none` runs SD3 on CLIP-L and CLIP-G alone.

Both sides run on the same weights and the same prompt embeddings: diffgraph's nodes load the model
and encode the prompt once (the text encoders are then dropped from the store, so T5 is never held
twice); diffusers' FluxTransformer2DModel / SD3Transformer2DModel is built from the same file, fully
offline, from the project's shipped config with sizes read from the tensors and diffusers' own
single-file key converter, its weights widened to the compute dtype at load (diffusers' way).
diffgraph keeps the file's dtype (bf16 / fp16 / fp8) and widens one layer at a time.

Both samplers run euler on the same sigmas (diffgraph's `simple` schedule, handed to diffusers'
FlowMatchEulerDiscreteScheduler with its own shift switched off) from the same starting noise, so the
final latents must agree; `final_latent_rel_l2` says how closely. FLUX runs dev's distilled guidance
3.5 at cfg 1 (one model call per step); SD3 runs cfg 4.5 (cond and uncond batched in one call).
Runs alternate sides; per-step time is the best round, peak RSS (CUDA: allocated) is measured per
side from a reset mark, with the weights each side holds reported beside it.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from engine import Environment, ModelPaths
from engine.devices import DevicePolicy
from engine.executor import Executor
from engine.model_store import ModelStore, object_nbytes
from nodes.diffusion import flux, sd3
from nodes.pack import build_registry
from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.flow import model_sampling_for
from nodes.sampling.noise import prepare_noise
from nodes.sampling.samplers import SampleRequest, sample
from nodes.sampling.schedulers import ksampler_sigmas

POSITIVE = "a photo of a cat sitting on a windowsill, highly detailed"
NEGATIVE = "blurry, low quality"
FLUX_GUIDANCE = 3.5
SD3_CFG = 4.5
SEED = 42
FLUX_WIDTH = 3072
# `--flow-file t5=none`: SD3 conditioned by CLIP-L and CLIP-G only (no 4.7 GB T5 in memory).
NO_T5 = "none"
# The reduced-depth full-width reference files (../shared/reference/flow) under a models folder.
DEFAULT_FILES = {
    "flux": {"unet": "flux1-dev-random-d2s2.safetensors"},
    "sd3": {"ckpt": "sd3.5m-random-d2.safetensors"},
    "text": {
        "clip_l": "clip_l-random.safetensors",
        "clip_g": "clip_g-random.safetensors",
        "t5": "t5xxl-random_fp8_e4m3fn.safetensors",
    },
}


@dataclass
class Prepared:
    """The diffgraph side's MODEL handle and store, and the conditioning both sides use."""

    model: Any
    store: ModelStore
    positive: Any
    negative: Any
    cfg: float


def flow_prompt(family: str, files: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The API prompt that loads the model and encodes the prompts; returns (prompt, output node ids)."""
    text = DEFAULT_FILES["text"] | files
    if family == "flux":
        prompt = {
            "1": {
                "class_type": "UNETLoader",
                "inputs": {"unet_name": files["unet"], "weight_dtype": "default"},
            },
            "2": {
                "class_type": "DualCLIPLoader",
                "inputs": {"clip_name1": text["clip_l"], "clip_name2": text["t5"], "type": "flux"},
            },
            "3": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["2", 0]}},
            "4": {
                "class_type": "FluxGuidance",
                "inputs": {"conditioning": ["3", 0], "guidance": FLUX_GUIDANCE},
            },
        }
        return prompt, ["1", "4"]
    clip: dict[str, Any] = {
        "class_type": "TripleCLIPLoader",
        "inputs": {"clip_name1": text["clip_l"], "clip_name2": text["clip_g"], "clip_name3": text["t5"]},
    }
    if text["t5"] == NO_T5:
        # SD3 without T5 (ComfyUI's DualCLIPLoader type sd3): CLIP-L and CLIP-G tokens only.
        inputs = {"clip_name1": text["clip_l"], "clip_name2": text["clip_g"], "type": "sd3"}
        clip = {"class_type": "DualCLIPLoader", "inputs": inputs}
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": files["ckpt"]}},
        "2": clip,
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["2", 0]}},
    }
    return prompt, ["1", "3", "4"]


def prepare(family: str, models: Path, files: dict[str, str], device: str, work: Path) -> Prepared:
    """Load the model handle and encode the prompts through diffgraph's nodes, then drop the text encoders."""
    store = ModelStore(DevicePolicy.from_env(device=device))
    paths = ModelPaths(models)
    env = Environment(work / "out", work / "tmp", work, models=store, model_paths=paths)
    prompt, outputs = flow_prompt(family, files)
    result = Executor(build_registry(paths, work), env).execute(prompt, prompt_id="bench", outputs=outputs)
    if result.status != "success":
        raise SystemExit(f"loading failed: {result.error and result.error.data()}")
    outs: Any = result.node_outputs
    model = outs["1"].MODEL
    for key in store.keys():  # noqa: SIM118 - the store is not iterable
        if key != model.recipe.store_key:
            store.evict(key)
    gc.collect()
    if family == "flux":
        return Prepared(model, store, outs["4"].CONDITIONING, None, 1.0)
    return Prepared(model, store, outs["3"].CONDITIONING, outs["4"].CONDITIONING, SD3_CFG)


def schedule(prep: Prepared, steps: int) -> torch.Tensor:
    """diffgraph's euler/simple sigmas for the model (both sides sample along these)."""
    return ksampler_sigmas(model_sampling_for(prep.model), "simple", "euler", steps)


def run_diffgraph(prep: Prepared, latents: torch.Tensor, sigmas: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Seconds of one diffgraph euler run, and its final latent in model space."""
    model, store = prep.model, prep.store
    ms = model_sampling_for(model)

    def unet(x_in, t, embeds, pooled, extras, control=None, transformer_options=None):
        return model.forward(store, x_in, t, embeds, pooled, extras)

    negative = prep.negative.entries if prep.negative is not None else []
    denoiser = CfgDenoiser(unet, ms, prep.positive.entries, negative, prep.cfg)
    req = SampleRequest(torch.zeros_like(latents), latents, sigmas, "euler", SEED)
    start = time.perf_counter()
    with torch.inference_mode():
        out = sample(denoiser, ms, model.latent_format, req, model.device)
    _sync(model.device)
    return time.perf_counter() - start, model.latent_format.process_in(out)


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _read_prefixed(path: Path, prefix: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The file's tensors under `prefix` (prefix removed), each widened to `dtype` as it is read."""
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
            if key.startswith(prefix):
                out[key[len(prefix) :]] = f.get_tensor(key).to(dtype)
    return out


def diffusers_transformer(family: str, path: Path, dtype: torch.dtype, device: str) -> torch.nn.Module:
    """diffusers' transformer for the file, built offline: shipped config, diffusers' converter, weights in `dtype`."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from diffusers.loaders import single_file_utils as sfu

    with safe_open(str(path), framework="pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    if family == "flux":
        prefix = flux.flux_prefix(list(shapes)) or ""
        cfg = flux.flux_config(shapes, prefix)
        tensors = _read_prefixed(path, prefix, dtype)
        hidden = cfg["num_attention_heads"] * flux.HEAD_DIM
        # diffusers' converter assumes the published width (3072); narrower test files take the project's map.
        if hidden == FLUX_WIDTH:
            state = sfu.convert_flux_transformer_checkpoint_to_diffusers(tensors)
        else:
            state = flux.bfl_to_diffusers(tensors, "", hidden)
        with torch.device("meta"):
            model: Any = FluxTransformer2DModel.from_config(cfg)
    else:
        prefix = sd3.mmdit_prefix(shapes) or ""
        cfg = sd3.transformer_config(shapes, prefix)
        state = sfu.convert_sd3_transformer_checkpoint_to_diffusers(_read_prefixed(path, prefix, dtype))
        with torch.device("meta"):
            model = SD3Transformer2DModel.from_config(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)


def diffusers_pipeline(family: str, transformer: torch.nn.Module):
    """FluxPipeline / StableDiffusion3Pipeline around the transformer, without VAE or text encoders.

    The scheduler's own shift is off: it steps along the sigmas it is handed (diffgraph's).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline

    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False
    )
    if family == "flux":
        return FluxPipeline(
            scheduler=scheduler,
            vae=None,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            transformer=transformer,
        )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )


def run_diffusers(
    family: str, pipe: Any, prep: Prepared, latents: torch.Tensor, sigmas: torch.Tensor, dtype: torch.dtype
) -> tuple[float, torch.Tensor]:
    """Seconds of one diffusers run from the same start, and its final latent [B, 16, h, w] in model space."""
    device = str(prep.model.device)
    pos = prep.positive.entries[0]
    _, _, h, w = latents.shape
    x = (latents * sigmas[0]).to(device, dtype)
    common = {
        "height": h * 8,
        "width": w * 8,
        "num_inference_steps": len(sigmas) - 1,
        "sigmas": [float(s) for s in sigmas[:-1]],
        "output_type": "latent",
        "prompt_embeds": pos.embeds.to(device, dtype),
        "pooled_prompt_embeds": pos.pooled.to(device, dtype),
    }
    start = time.perf_counter()
    with torch.inference_mode():
        if family == "flux":
            packed = pipe._pack_latents(x, 1, x.shape[1], h, w)
            out = pipe(latents=packed, guidance_scale=FLUX_GUIDANCE, **common).images
            out = pipe._unpack_latents(out, h * 8, w * 8, pipe.vae_scale_factor)
        else:
            neg = prep.negative.entries[0]
            out = pipe(
                latents=x,
                guidance_scale=prep.cfg,
                negative_prompt_embeds=neg.embeds.to(device, dtype),
                negative_pooled_prompt_embeds=neg.pooled.to(device, dtype),
                **common,
            ).images
    _sync(device)
    return time.perf_counter() - start, out.float().cpu()


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 distance of b from a."""
    return float((a.float() - b.float()).norm() / a.float().norm())


def models_dir(args: argparse.Namespace) -> Path:
    """The models folder: --models-dir, else $DIFFGRAPH_FLOW_MODELS."""
    given = args.models_dir or os.environ.get("DIFFGRAPH_FLOW_MODELS")
    if not given:
        raise SystemExit("--family flux|sd3 needs --models-dir or $DIFFGRAPH_FLOW_MODELS")
    return Path(given)


def compare_flow(args: argparse.Namespace) -> dict[str, Any]:
    """Alternating diffgraph / diffusers runs of a FLUX or SD3 model; the JSON-ready result."""
    from bench.sampling import UnetClock, peak_memory_mb, reset_peak

    family, models = args.family, models_dir(args)
    files = DEFAULT_FILES[family] | DEFAULT_FILES["text"]
    for item in getattr(args, "flow_file", None) or []:
        role, _, name = item.partition("=")
        if role not in files or not name:
            raise SystemExit(f"--flow-file {item!r}: expected ROLE=NAME with ROLE one of {', '.join(files)}")
        files[role] = name
    if family == "flux":
        files.pop("clip_g")  # FLUX has no CLIP-G
    with tempfile.TemporaryDirectory() as work:
        prep = prepare(family, models, files, args.device, Path(work))
    ours_module = prep.model.load(prep.store)
    dtype = prep.model.compute_dtype
    weight_file = models / ("diffusion_models" if family == "flux" else "checkpoints")
    weight_file = weight_file / files["unet" if family == "flux" else "ckpt"]
    base = reset_peak(args.device)
    transformer = diffusers_transformer(family, weight_file, dtype, args.device)
    theirs_load_mb = peak_memory_mb(args.device) - base
    pipe = diffusers_pipeline(family, transformer)
    ours_inner = ours_module.transformer if family == "flux" else ours_module
    clocks = {"ours": UnetClock(ours_inner), "theirs": UnetClock(transformer)}
    size = args.size
    latents = prepare_noise(torch.zeros(1, 16, size // 8, size // 8), SEED)
    sigmas = schedule(prep, args.steps)
    # Warm-up of both paths (allocator, kernels) on one step before timing.
    run_diffgraph(prep, latents, schedule(prep, 1))
    run_diffusers(family, pipe, prep, latents, schedule(prep, 1), dtype)
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    outside: dict[str, list[float]] = {"ours": [], "theirs": []}
    memory: dict[str, float] = {}
    finals: dict[str, torch.Tensor] = {}
    for round_index in range(args.rounds):
        # Who goes first alternates, so drift in machine load does not favour one side.
        order = ("ours", "theirs") if round_index % 2 == 0 else ("theirs", "ours")
        for side in order:
            base = reset_peak(args.device)
            clocks[side].reset()
            if side == "ours":
                total, finals[side] = run_diffgraph(prep, latents, sigmas)
            else:
                total, finals[side] = run_diffusers(family, pipe, prep, latents, sigmas, dtype)
            times[side].append(total / args.steps)
            outside[side].append((total - clocks[side].seconds) / args.steps)
            name = "diffgraph" if side == "ours" else "diffusers"
            peak = peak_memory_mb(args.device)
            memory[f"{name}_peak_mb"] = max(memory.get(f"{name}_peak_mb", 0.0), peak)
            memory[f"{name}_working_mb"] = max(memory.get(f"{name}_working_mb", 0.0), peak - base)
    ours_s, theirs_s = min(times["ours"]), min(times["theirs"])
    return {
        "family": prep.model.family,
        "device": args.device,
        "size": size,
        "steps": args.steps,
        "rounds": args.rounds,
        "compute_dtype": str(dtype),
        "files": files,
        "diffgraph_s_per_step": ours_s,
        "diffusers_s_per_step": theirs_s,
        "ratio": ours_s / theirs_s,
        "diffgraph_outside_model_ms_per_step": 1000.0 * min(outside["ours"]),
        "diffusers_outside_model_ms_per_step": 1000.0 * min(outside["theirs"]),
        "final_latent_rel_l2": rel_l2(finals["theirs"], finals["ours"]),
        "diffgraph_weights_mb": object_nbytes(ours_module) / 2**20,
        "diffusers_weights_mb": object_nbytes(transformer) / 2**20,
        "diffusers_load_peak_above_base_mb": theirs_load_mb,
        **memory,
        "samples": {"diffgraph": times["ours"], "diffusers": times["theirs"]},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
