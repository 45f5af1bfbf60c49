"""Model folders in ComfyUI's layout (checkpoints/, vae/, loras/...) and safe name resolution in them."""

from __future__ import annotations

import builtins
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
    "text_encoders",
    "unet",
    "diffusion_models",
    "upscale_models",
    "controlnet",
    "clip_vision",
    "style_models",
    "gligen",
    "model_patches",
)


# Folder kinds that also read an older folder name, as ComfyUI does (text_encoders/ then clip/,
# diffusion_models/ then unet/); a name found in both resolves to the first.
FOLDER_ALIASES: dict[str, tuple[str, ...]] = {
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
}


def models_dir_default(base: Path = Path(".")) -> Path:
    """`$DIFFGRAPH_MODELS_DIR` when set, else `base/models`."""
    return Path(os.environ.get(MODELS_DIR_ENV) or base / "models")


class ModelPathError(DiffgraphError):
    """A model name that is missing, or that would leave its folder."""

    code = "model_not_found"


def _is_model_folder(path: Path) -> bool:
    """A diffusers pipeline folder (model_index.json) or single-model folder (config.json + weights).

    Single models are diffusers' (diffusion_pytorch_model*.safetensors: transformer/, vae/) or
    transformers' (model*.safetensors: a text encoder such as text_encoder_2/).
    """
    if (path / "model_index.json").is_file():
        return True
    if not (path / "config.json").is_file():
        return False
    return any(path.glob("diffusion_pytorch_model*.safetensors")) or any(path.glob("model*.safetensors"))


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
        """Model names (relative paths with '/') in a folder, sorted; diffusers folders count as one.

        A folder kind with aliases (FOLDER_ALIASES) lists the names of all its directories together.
        """
        if folder in FOLDER_ALIASES:
            return sorted({n for kind in FOLDER_ALIASES[folder] for n in self._list_one(kind)})
        return self._list_one(folder)

    def _list_one(self, folder: str) -> builtins.list[str]:
        base = self.folder(folder)
        if not base.is_dir():
            return []
        names = []
        for path in base.rglob("*"):
            if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
                if any(_is_model_folder(parent) for parent in path.parents if parent != base):
                    continue
                names.append(path.relative_to(base).as_posix())
            elif path.is_dir() and _is_model_folder(path):
                # A pipeline's component subfolders (unet/, vae/...) are parts of it, not models.
                if any(_is_model_folder(parent) for parent in path.parents if parent != base):
                    continue
                names.append(path.relative_to(base).as_posix())
        return sorted(names)

    def resolve(self, folder: str, name: str) -> Path:
        """The path of a model by name; refuses names that escape the folder, and missing files.

        A folder kind with aliases looks in each of its directories in turn.
        """
        kinds = FOLDER_ALIASES.get(folder, (folder,))
        for kind in kinds[:-1]:
            found = self._inside(kind, name)
            if found.exists():
                return found
        path = self._inside(kinds[-1], name)
        if not path.exists():
            where = " or ".join(str(self.folder(k).resolve()) for k in kinds)
            available = ", ".join(self.list(folder)[:10]) or "none"
            raise ModelPathError(
                f"model file {name!r} not found in {where}; put it there or pick one of: {available}"
            )
        return path

    def _inside(self, folder: str, name: str) -> Path:
        """`name` under one directory, refusing names that would leave it."""
        base = self.folder(folder).resolve()
        if not name or name.startswith(("/", "\\")) or "\\" in name or ".." in Path(name).parts:
            raise ModelPathError(f"model name {name!r} is not a plain name inside {folder}/")
        path = (base / name).resolve()
        if base not in path.parents:
            raise ModelPathError(f"model name {name!r} leads outside {folder}/")
        return path
