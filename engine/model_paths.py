"""Model folders in ComfyUI's layout (checkpoints/, vae/, loras/...) and safe name resolution in them."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import DiffgraphError

# Points every entry point (CLI, server, Python API) at a shared models folder.
MODELS_DIR_ENV = "DIFFGRAPH_MODELS_DIR"

# ComfyUI's folder names and the file extensions each lists.
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")
FOLDERS = (
    "checkpoints",
    "vae",
    "loras",
    "vae_approx",
    "embeddings",
    "diffusers",
    "clip",
    "unet",
    "upscale_models",
    "controlnet",
    "clip_vision",
    "style_models",
    "gligen",
)


def models_dir_default(base: Path = Path(".")) -> Path:
    """`$DIFFGRAPH_MODELS_DIR` when set, else `base/models`."""
    return Path(os.environ.get(MODELS_DIR_ENV) or base / "models")


class ModelPathError(DiffgraphError):
    """A model name that is missing, or that would leave its folder."""

    code = "model_not_found"


class ModelPaths:
    """Resolves model names under one models directory (`<root>/<folder>/<name>`)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def folder(self, folder: str) -> Path:
        """The directory for a folder kind, e.g. `<root>/checkpoints`."""
        if folder not in FOLDERS:
            raise ModelPathError(f"unknown model folder {folder!r}; known: {', '.join(FOLDERS)}")
        return self.root / folder

    def list(self, folder: str) -> list[str]:
        """Model names (relative paths with '/') in a folder, sorted; diffusers folders count as one."""
        base = self.folder(folder)
        if not base.is_dir():
            return []
        names = []
        for path in base.rglob("*"):
            if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
                if any(
                    parent.joinpath("model_index.json").is_file() for parent in path.parents if parent != base
                ):
                    continue
                names.append(path.relative_to(base).as_posix())
            elif path.is_dir() and (path / "model_index.json").is_file():
                names.append(path.relative_to(base).as_posix())
        return sorted(names)

    def resolve(self, folder: str, name: str) -> Path:
        """The path of a model by name; refuses names that escape the folder, and missing files."""
        base = self.folder(folder).resolve()
        if not name or name.startswith(("/", "\\")) or "\\" in name or ".." in Path(name).parts:
            raise ModelPathError(f"model name {name!r} is not a plain name inside {folder}/")
        path = (base / name).resolve()
        if base not in path.parents:
            raise ModelPathError(f"model name {name!r} leads outside {folder}/")
        if not path.exists():
            available = ", ".join(self.list(folder)[:10]) or "none"
            raise ModelPathError(
                f"model file {name!r} not found in {base}; put it there or pick one of: {available}"
            )
        return path
