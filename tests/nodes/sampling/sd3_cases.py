"""The SD3.5 sampling cases shared by the test and the script that recorded ComfyUI's latents.

Conditioning is drawn from a seeded CPU generator (torch 2.13 on both sides), so no text encoder is
involved: these cases check the MMDiT, flow-matching sampling, CFG and Skip Layer Guidance alone.
"""

import torch

# Batch of one, 256x256 px image -> [1, 16, 32, 32] latent; 154 tokens as SD3's CLIP + T5 concat has.
LATENT_SHAPE = (1, 16, 32, 32)
TOKENS = 154
COND_SEED = 2024

CASES = {
    "euler_simple": {
        "sampler": "euler",
        "scheduler": "simple",
        "steps": 4,
        "cfg": 4.5,
        "seed": 42,
        "shift": 3.0,
    },
    "dpmpp_2m_beta": {
        "sampler": "dpmpp_2m",
        "scheduler": "beta",
        "steps": 4,
        "cfg": 4.5,
        "seed": 7,
        "shift": 3.0,
    },
    "auraflow_euler": {
        "sampler": "euler",
        "scheduler": "simple",
        "steps": 3,
        "cfg": 2.0,
        "seed": 5,
        "shift": 1.73,
        "sampling": "auraflow",
    },
    "slg_euler": {
        "sampler": "euler",
        "scheduler": "simple",
        "steps": 4,
        "cfg": 4.5,
        "seed": 42,
        "shift": 3.0,
        "slg": {"layers": "0", "scale": 3.0, "start_percent": 0.0, "end_percent": 0.5},
    },
}


def conditioning() -> dict[str, torch.Tensor]:
    """Positive and negative (context, pooled) pairs: context [1, 154, 4096], pooled [1, 2048]."""
    g = torch.Generator().manual_seed(COND_SEED)
    return {
        "positive": torch.randn(1, TOKENS, 4096, generator=g),
        "positive_pooled": torch.randn(1, 2048, generator=g),
        "negative": torch.randn(1, TOKENS, 4096, generator=g),
        "negative_pooled": torch.randn(1, 2048, generator=g),
    }


# A whole txt2img with the reference CLIP-L and CLIP-G files (DualCLIPLoader type sd3: SD3 without T5,
# whose 4.7 GB would need the big-memory slot), see make_comfyui_sd3_text.py and test_sd3_sampling.py.
TEXT_CASE = {
    "ckpt": "sd3.5m-random-d2.safetensors",
    "clip_files": ("clip_l-random.safetensors", "clip_g-random.safetensors"),
    "positive": "a lighthouse on a cliff at dawn, (dramatic clouds:1.2), oil painting",
    "negative": "blurry, low quality",
    "width": 256,
    "height": 256,
    "seed": 11,
    "steps": 4,
    "cfg": 4.5,
    "sampler": "euler",
    "scheduler": "simple",
    "shift": 3.0,
}
