"""Writes this folder's API workflows (one `<case>/workflow_api.json` each); run by hand, output committed.

Every case of a family shares its loader and text-encoding nodes (same ids, same inputs, same prompts), so
one ComfyUI server session and one diffgraph executor encode each prompt once for all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
POSITIVE = "a red fox standing in fresh snow, watercolor, soft morning light"
NEGATIVE = "blurry, low quality, text"
SEED = 42
STEPS = 4

FLUX_DEV = "flux1-dev-random-d2s2.safetensors"
FLUX_SCHNELL = "flux1-schnell-random-d2s2.safetensors"
SD35 = "sd3.5m-random-d2.safetensors"
SD35_LARGE = "sd3.5l-random-d2.safetensors"
CLIP_L = "clip_l-random.safetensors"
CLIP_G = "clip_g-random.safetensors"
T5XXL = "t5xxl-random_fp8_e4m3fn.safetensors"


def _flux_base(unet: str) -> dict:
    """Loaders, the two prompts and a 128x128 latent (FLUX: CLIP-L + T5-XXL)."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": CLIP_L, "clip_name2": T5XXL, "type": "flux", "device": "default"},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["2", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
    }


def _sd35_base(ckpt: str = SD35) -> dict:
    """Checkpoint (MMDiT + VAE, no text encoders), TripleCLIPLoader, prompts, shift 3, a 256x256 latent."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {
            "class_type": "TripleCLIPLoader",
            "inputs": {"clip_name1": CLIP_L, "clip_name2": CLIP_G, "clip_name3": T5XXL},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["2", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "6": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 3.0}},
    }


def _save(prompt: dict, node: str, source: list, key: str) -> None:
    prompt[node] = {"class_type": "SaveLatent", "inputs": {"samples": source, "filename_prefix": key}}


def _ksampler(
    prompt: dict, model: list, cfg: float, sampler: str, scheduler: str, pos: list, neg: list
) -> None:
    prompt["20"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "seed": SEED,
            "steps": STEPS,
            "cfg": cfg,
            "sampler_name": sampler,
            "scheduler": scheduler,
            "denoise": 1.0,
            "positive": pos,
            "negative": neg,
            "latent_image": ["5", 0],
        },
    }
    _save(prompt, "30", ["20", 0], "latent")


def _custom(prompt: dict, model: list, guider: dict, sampler: str) -> None:
    """RandomNoise + guider + KSamplerSelect + BasicScheduler(simple) into SamplerCustomAdvanced."""
    prompt["10"] = guider
    prompt["11"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}}
    prompt["12"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    prompt["13"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": model, "scheduler": "simple", "steps": STEPS, "denoise": 1.0},
    }
    prompt["20"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["11", 0],
            "guider": ["10", 0],
            "sampler": ["12", 0],
            "sigmas": ["13", 0],
            "latent_image": ["5", 0],
        },
    }
    _save(prompt, "30", ["20", 0], "latent")
    _save(prompt, "31", ["20", 1], "denoised")


def _split(prompt: dict, model: list, guider: dict) -> None:
    """Two passes: euler on the first 2 of 4 simple sigmas, then dpmpp_2m without new noise on the rest."""
    _custom(prompt, model, guider, "euler")
    del prompt["31"]
    prompt["14"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["13", 0], "step": 2}}
    prompt["20"]["inputs"]["sigmas"] = ["14", 0]
    prompt["15"] = {"class_type": "DisableNoise", "inputs": {}}
    prompt["16"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}}
    prompt["21"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["15", 0],
            "guider": ["10", 0],
            "sampler": ["16", 0],
            "sigmas": ["14", 1],
            "latent_image": ["20", 0],
        },
    }
    _save(prompt, "30", ["21", 0], "latent")
    _save(prompt, "32", ["20", 0], "first_pass")


def flux_cases(unet: str, dev: bool) -> dict[str, dict]:
    """KSampler euler/simple, SamplerCustomAdvanced + BasicGuider, KSampler dpmpp_2m/beta, split sigmas."""
    pos, neg = ["3", 0], ["4", 0]
    cases: dict[str, dict] = {}

    def base() -> dict:
        prompt = _flux_base(unet)
        if dev:
            prompt["6"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": pos, "guidance": 3.5}}
        prompt["7"] = {
            "class_type": "ModelSamplingFlux",
            "inputs": {"model": ["1", 0], "max_shift": 1.15, "base_shift": 0.5, "width": 128, "height": 128},
        }
        return prompt

    guided = ["6", 0] if dev else pos
    model = ["7", 0] if dev else ["1", 0]
    basic = {"class_type": "BasicGuider", "inputs": {"model": model, "conditioning": guided}}
    prompt = base()
    _ksampler(prompt, ["1", 0], 1.0, "euler", "simple", guided, neg)
    cases["ksampler_euler_simple"] = prompt
    prompt = base()
    _custom(prompt, model, basic, "euler")
    cases["custom_basic_guider"] = prompt
    prompt = base()
    _ksampler(prompt, model, 1.0, "dpmpp_2m", "beta", guided, neg)
    cases["ksampler_dpmpp_2m_beta"] = prompt
    prompt = base()
    _split(prompt, model, basic)
    cases["split_sigmas"] = prompt
    if dev:
        prompt = base()
        # The negative goes in without FluxGuidance: the model's default guidance applies to it.
        cfg = {
            "class_type": "CFGGuider",
            "inputs": {"model": model, "positive": guided, "negative": neg, "cfg": 2.0},
        }
        _custom(prompt, model, cfg, "euler")
        cases["custom_cfg_guider"] = prompt
    for prompt in cases.values():
        links = [v for node in prompt.values() for v in node["inputs"].values() if isinstance(v, list)]
        if ["7", 0] not in links:
            del prompt["7"]
    return cases


def sd35_cases() -> dict[str, dict]:
    """KSampler euler/simple cfg 4, SamplerCustomAdvanced + CFGGuider, dpmpp_2m/beta, split sigmas."""
    model, pos, neg = ["6", 0], ["3", 0], ["4", 0]
    cases: dict[str, dict] = {}
    prompt = _sd35_base()
    _ksampler(prompt, model, 4.0, "euler", "simple", pos, neg)
    cases["ksampler_euler_simple"] = prompt
    prompt = _sd35_base()
    # CLIPTextEncodeSD3 with no T5 prompt and no padding: the T5 part of the conditioning is left out.
    prompt["8"] = {
        "class_type": "CLIPTextEncodeSD3",
        "inputs": {
            "clip": ["2", 0],
            "clip_l": POSITIVE,
            "clip_g": POSITIVE,
            "t5xxl": "",
            "empty_padding": "none",
        },
    }
    cfg = {
        "class_type": "CFGGuider",
        "inputs": {"model": model, "positive": ["8", 0], "negative": neg, "cfg": 4.5},
    }
    _custom(prompt, model, cfg, "euler")
    cases["custom_cfg_guider"] = prompt
    prompt = _sd35_base()
    _ksampler(prompt, model, 4.0, "dpmpp_2m", "beta", pos, neg)
    cases["ksampler_dpmpp_2m_beta"] = prompt
    prompt = _sd35_base()
    cfg = {
        "class_type": "CFGGuider",
        "inputs": {"model": model, "positive": pos, "negative": neg, "cfg": 4.0},
    }
    _split(prompt, model, cfg)
    cases["split_sigmas"] = prompt
    return cases


def sd35_large_cases() -> dict[str, dict]:
    """KSampler euler/simple on the large layout: large's cfg 4.5, and large turbo's cfg 1 (same layout)."""
    model, pos, neg = ["6", 0], ["3", 0], ["4", 0]
    cases: dict[str, dict] = {}
    for name, cfg in (("ksampler_euler_simple", 4.5), ("turbo_ksampler_euler_simple", 1.0)):
        prompt = _sd35_base(SD35_LARGE)
        _ksampler(prompt, model, cfg, "euler", "simple", pos, neg)
        cases[name] = prompt
    return cases


def all_cases() -> dict[str, dict]:
    """Case folder name -> API workflow."""
    cases = {f"flux_dev_{k}": v for k, v in flux_cases(FLUX_DEV, dev=True).items()}
    cases |= {f"flux_schnell_{k}": v for k, v in flux_cases(FLUX_SCHNELL, dev=False).items()}
    cases |= {f"sd35_{k}": v for k, v in sd35_cases().items()}
    cases |= {f"sd35l_{k}": v for k, v in sd35_large_cases().items()}
    return cases


if __name__ == "__main__":
    for name, prompt in all_cases().items():
        (HERE / name).mkdir(exist_ok=True)
        text = json.dumps(dict(sorted(prompt.items(), key=lambda kv: int(kv[0]))), indent=1) + "\n"
        (HERE / name / "workflow_api.json").write_text(text)
        print(name)
