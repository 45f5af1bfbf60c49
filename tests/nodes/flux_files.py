"""Tiny random FLUX files (diffusion models, text encoders, autoencoder) under chosen names, for tests."""

from __future__ import annotations

from pathlib import Path

from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_text_encoder import make_text_encoder

# The file names ComfyUI's FLUX templates use, and what each is.
TEMPLATE_NAMES = {
    ("diffusion_models", "flux1-dev.safetensors"): "flux1-dev",
    ("diffusion_models", "flux1-schnell.safetensors"): "flux1-schnell",
    # Kontext dev files have dev's layout; Fill dev's img_in takes 384 features.
    ("diffusion_models", "flux1-kontext-dev.safetensors"): "flux1-dev",
    ("diffusion_models", "flux1-fill-dev.safetensors"): "flux1-fill-dev",
    ("text_encoders", "clip_l.safetensors"): "clip_l",
    ("text_encoders", "t5xxl_fp16.safetensors"): "t5xxl",
    ("vae", "ae.safetensors"): "flux-ae",
}


def write_tiny_flux_models(
    root: Path, names: dict[tuple[str, str], str] = TEMPLATE_NAMES, seed: int = 0
) -> Path:
    """Write each (folder, file name) -> arch as a tiny random file under `root` (a models folder)."""
    for (folder, name), arch in names.items():
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if arch in ("clip_l", "t5xxl"):
            make_text_encoder(arch, "tiny", seed, path, "fp16")
        else:
            make_flux_file(arch, "tiny", seed, path)
    return root
