"""diffgraph's builtin node pack: registers every node module's NODES into a registry."""

from __future__ import annotations

import importlib
from pathlib import Path

from engine import FOLDERS, ChoiceProvider, ModelPaths, Registry

# Each module exposes NODES: list of node classes. Order is the order clients list them.
NODE_MODULES: tuple[str, ...] = (
    "nodes.defs.image",
    "nodes.defs.video",
    "nodes.defs.animation",
    "nodes.defs.loaders",
    "nodes.defs.model_patches",
    "nodes.defs.model_merging",
    "nodes.defs.text",
    "nodes.defs.clip_loaders",
    "nodes.defs.flow_text",
    "nodes.defs.conditioning",
    "nodes.defs.controlnet",
    "nodes.defs.clip_vision",
    "nodes.defs.unclip",
    "nodes.defs.style_model",
    "nodes.defs.gligen",
    "nodes.defs.latent",
    "nodes.defs.vae",
    "nodes.defs.inpaint",
    "nodes.defs.instruct_pix2pix",
    "nodes.defs.model_sampling",
    "nodes.defs.sd3",
    "nodes.defs.sampler",
    "nodes.defs.custom_sampling",
    "nodes.defs.sampler_select",
    "nodes.defs.sigma_nodes",
    "nodes.defs.flux",
    "nodes.defs.flux_kontext",
    "nodes.defs.uso",
    "nodes.defs.unet_loader",
    "nodes.defs.latent_io",
    "nodes.defs.latent_ops",
    "nodes.defs.latent_batch",
    "nodes.defs.rebatch",
    "nodes.defs.image_ops",
    "nodes.defs.upscale_model",
    "nodes.defs.image_filters",
    "nodes.defs.preprocessors",
    "nodes.defs.image_transform",
    "nodes.defs.mask_ops",
    "nodes.defs.primitives",
    "nodes.defs.utilities",
    "nodes.defs.logic",
    "nodes.defs.math_expression",
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def register(registry: Registry) -> None:
    """Entry point of the `diffgraph.nodes` group: add every builtin node to the registry."""
    for module_name in NODE_MODULES:
        module = importlib.import_module(module_name)
        for node_cls in module.NODES:
            registry.register(node_cls)


def choice_provider(model_paths: ModelPaths, input_dir: Path) -> ChoiceProvider:
    """Dynamic combo lists: model folders by name, and `input_images` for files in the input dir."""

    def choices(source: str) -> list[str]:
        if source in FOLDERS:
            return model_paths.list(source)
        if source == "input_latents":
            from nodes.media.latent_files import list_latent_files

            return list_latent_files(input_dir)
        if source == "input_images":
            if not input_dir.is_dir():
                return []
            return sorted(
                p.relative_to(input_dir).as_posix()
                for p in input_dir.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        raise KeyError(f"unknown combo source {source!r}")

    return choices


def build_registry(model_paths: ModelPaths, input_dir: Path) -> Registry:
    """A registry with the builtin pack and every installed pack, choices bound to these folders."""
    registry = Registry(choices=choice_provider(model_paths, input_dir))
    register(registry)
    # Installed packs (the `diffgraph.nodes` entry points; ours among them registers nothing new).
    return registry.load_entry_points()
