"""One-model diffusers/transformers folders (config.json + safetensors, sharded or not): files, shapes, tensors.

A published folder holds its weights either in one file (`diffusion_pytorch_model.safetensors` for
diffusers models, `model.safetensors` for transformers ones) or in shards named by an index
(`<stem>.safetensors.index.json`, whose `weight_map` gives each tensor's shard). Every shard the index
names must be present: a partly downloaded folder is refused with the missing file's name, before
anything is read. Folders holding only pickle weights (`.bin`) are refused unless pickle is allowed.
Plain files pass through the same functions, so loaders take either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.checkpoint_io import (
    Cast,
    CheckpointFormatError,
    PickleRefusedError,
    pickle_allowed,
    read_header,
    read_pickle,
    read_weights,
)

# Weight file stems: diffusers models, then transformers models.
STEMS = ("diffusion_pytorch_model", "model")


def folder_name(folder: Path) -> str:
    """`parent/name` of a folder, how messages name a pipeline's part."""
    return f"{folder.parent.name}/{folder.name}"


def is_weight_folder(path: Path) -> bool:
    """Whether `path` is a folder with a config.json and safetensors weights of one model."""
    if not path.is_dir() or not (path / "config.json").is_file():
        return False
    return any(next(path.glob(f"{stem}*.safetensors"), None) is not None for stem in STEMS)


def read_config(folder: Path, name: str = "config.json") -> dict[str, Any]:
    """A folder's JSON file as a dict; a clear error naming the folder when absent or broken."""
    path = folder / name
    if not path.is_file():
        raise CheckpointFormatError(f"{folder_name(folder)}: {name} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{folder_name(folder)}/{name}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{folder_name(folder)}/{name}: expected a JSON object")
    return data


def _indexed_shards(folder: Path, index: Path) -> list[Path]:
    data = read_config(folder, index.name)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointFormatError(f"{folder_name(folder)}/{index.name}: no weight_map")
    shards = sorted({str(v) for v in weight_map.values()})
    if any("/" in s or "\\" in s or s.startswith(".") for s in shards):
        raise CheckpointFormatError(
            f"{folder_name(folder)}/{index.name}: shard names must be plain file names"
        )
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise CheckpointFormatError(
            f"{folder_name(folder)}: {index.name} lists {len(shards)} weight files but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; download the folder again"
        )
    return [folder / s for s in shards]


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding a folder's model (its index's shards, or the one weights file)."""
    for stem in STEMS:
        index = folder / f"{stem}.safetensors.index.json"
        if index.is_file():
            return _indexed_shards(folder, index)
        single = folder / f"{stem}.safetensors"
        if single.is_file():
            return [single]
    pickles = sorted(folder.glob("*.bin"))
    if pickles and not pickle_allowed():
        raise PickleRefusedError(
            f"{folder_name(folder)} holds only pickle weights ({pickles[0].name}); pickle can run code "
            "when loaded, so diffgraph refuses it by default. Convert the folder to safetensors, or opt in "
            "with DIFFGRAPH_ALLOW_PICKLE=1 (it is then read with torch.load(weights_only=True))."
        )
    if pickles:
        return pickles
    raise CheckpointFormatError(
        f"{folder_name(folder)}: no weights; expected diffusion_pytorch_model.safetensors or "
        "model.safetensors, or sharded files with their .safetensors.index.json"
    )


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape of a weight file or folder (safetensors headers only; pickle is read)."""
    files = weight_files(path) if path.is_dir() else [path]
    shapes: dict[str, list[int]] = {}
    for file in files:
        if file.suffix.lower() in (".safetensors", ".sft"):
            header, _ = read_header(file)
            shapes.update({k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"})
        else:
            shapes.update({k: list(v.shape) for k, v in read_pickle(file).items()})
    return shapes


def read_model_weights(
    path: Path,
    want: Callable[[str], bool] | None = None,
    cast: Cast | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of a weight file or of every shard of a folder (see checkpoint_io.read_weights)."""
    if not path.is_dir():
        return read_weights(path, want, cast, device)
    out: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        out.update(read_weights(file, want, cast, device))
    return out


def weight_bytes(path: Path) -> int:
    """Bytes of a weight file, or of a folder's weight files (the model store's size hint)."""
    if not path.is_dir():
        return path.stat().st_size
    return sum(f.stat().st_size for f in weight_files(path))


def signature(path: Path) -> tuple[int, int]:
    """(newest mtime in ns, total bytes) of a weight file or folder: changes when its weights do."""
    files = weight_files(path) if path.is_dir() else [path]
    stats = [f.stat() for f in files]
    return max(s.st_mtime_ns for s in stats), sum(s.st_size for s in stats)
