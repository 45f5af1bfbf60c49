"""Textual-inversion embeddings: `embedding:name` words in prompts, files in models/embeddings/.

Facts followed (ComfyUI's sd1_clip embedding loading, reimplemented): a name is looked up as given, then
with `.safetensors`, `.pt`, `.bin` appended, in the embeddings folder and every folder below it; a
trailing comma (`embedding:name,`) is tried without it and then tokenized as text. Inside a file, the
vectors are A1111's `string_to_param` entry, else the encoder's own key (`clip_l`, `clip_g`, `clip_h`),
else the `bundle_emb.*` LoRA-bundle entries, else the first tensor. Each vector takes one token position.
diffgraph refuses what ComfyUI skips with a log line: a missing file, and vectors whose width does not
match the text encoder's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from engine import UserFacingError
from nodes.diffusion.checkpoint_io import PICKLE_ENV, pickle_allowed

PREFIX = "embedding:"
EXTENSIONS = (".safetensors", ".pt", ".bin")

# (name) -> vectors [n, width] for one text encoder, or None when no file has that name.
EmbeddingLookup = Callable[[str], "torch.Tensor | None"]


class EmbeddingNotFoundError(UserFacingError):
    """A prompt names an embedding that is not in the embeddings folder."""

    code = "embedding_not_found"


class EmbeddingFormatError(UserFacingError):
    """An embedding file that cannot be used with this text encoder."""

    code = "embedding_invalid"


def prompt_embedding_names(text: str) -> Iterator[tuple[str, str]]:
    """(name, name without trailing commas) for every `embedding:` word of a prompt."""
    for line in text.replace("(", " ").replace(")", " ").split("\n"):
        for word in line.split(" "):
            if word.startswith(PREFIX) and len(word) > len(PREFIX):
                name = word[len(PREFIX) :]
                # "(embedding:x:1.2)" carries a weight after the last colon.
                head, _, tail = name.rpartition(":")
                if head and _is_number(tail):
                    name = head
                yield name, name.rstrip(",")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def find_embedding(folder: Path, name: str) -> Path | None:
    """The file an embedding name refers to (exact name first, then with each extension), or None."""
    if not folder.is_dir():
        return None
    base = folder.resolve()
    dirs = [base] + sorted(Path(root) for root, _, _ in os.walk(base, followlinks=True) if Path(root) != base)
    for directory in dirs:
        path = (directory / name).resolve()
        if base != path and base not in path.parents:
            continue  # names such as "../x" must not leave the embeddings folder
        if path.is_file():
            return path
        for ext in EXTENSIONS:
            candidate = path.with_name(path.name + ext)
            if candidate.is_file():
                return candidate
    return None


def missing_embeddings(text: str, folder: Path) -> list[str]:
    """Names of the prompt's embeddings that no file in `folder` provides."""
    missing = []
    for name, stripped in prompt_embedding_names(text):
        if find_embedding(folder, name) is None and find_embedding(folder, stripped) is None:
            missing.append(name)
    return missing


def read_embedding_file(path: Path) -> Any:
    """A file's contents: safetensors tensors, or a weights-only pickle behind the pickle opt-in."""
    if path.suffix.lower() == ".safetensors":
        return load_file(str(path), device="cpu")
    if not pickle_allowed():
        raise EmbeddingFormatError(
            f"embedding {path.name} is a pickle file; pickle can run code when loaded, so diffgraph "
            f"refuses it by default. Convert it to .safetensors, or opt in with {PICKLE_ENV}=1"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise EmbeddingFormatError(
            f"embedding {path.name}: cannot read as a weights-only pickle: {exc}"
        ) from exc


def _bundled(data: dict, middle: str) -> torch.Tensor | None:
    parts = [v for k, v in data.items() if k.startswith("bundle_emb.") and middle in k]
    return torch.cat(parts, dim=0) if parts else None


def select_vectors(data: Any, key: str, width: int) -> torch.Tensor:
    """The [n, D] vectors a file holds for one encoder (see the module docstring for the order)."""
    if isinstance(data, list):
        rows = [t.reshape(-1, t.shape[-1]) for item in data for t in item.values() if t.shape[-1] == width]
        if not rows:
            raise EmbeddingFormatError(f"no {width}-wide vectors in the embedding list")
        return torch.cat(rows)
    if not isinstance(data, dict) or not data:
        raise EmbeddingFormatError("the file holds no tensors")
    if isinstance(data.get("string_to_param"), dict):
        return next(iter(data["string_to_param"].values()))
    if key in data:
        return data[key]
    found = _bundled(data, ".string_to_param.")
    if found is None:
        found = _bundled(data, f".{key}")
    if found is None:
        found = next(v for v in data.values() if isinstance(v, torch.Tensor))
    return found


class EmbeddingLibrary:
    """The embeddings of one models folder, each file read once per library."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._files: dict[Path, Any] = {}

    def lookup(self, key: str, width: int) -> EmbeddingLookup:
        """A name -> vectors function for the encoder with this embedding key and width."""
        return lambda name: self.vectors(name, key, width)

    def vectors(self, name: str, key: str, width: int) -> torch.Tensor | None:
        """Float32 [n, width] vectors of a named embedding, or None when no file has that name."""
        if self.folder is None:
            return None
        path = find_embedding(self.folder, name)
        if path is None:
            return None
        if path not in self._files:
            self._files[path] = read_embedding_file(path)
        vectors = select_vectors(self._files[path], key, width)
        vectors = vectors.reshape(-1, vectors.shape[-1]).float()
        if vectors.shape[-1] != width:
            raise EmbeddingFormatError(
                f"embedding {name!r} has {vectors.shape[-1]}-wide vectors but this model's {key} text "
                f"encoder takes {width}; it was trained for another model family"
            )
        return vectors


def missing_message(names: list[str], folder: Path) -> str:
    """What to tell the user about embeddings that are not there."""
    listed = ", ".join(repr(n) for n in names)
    return (
        f"embedding {listed} not found in {folder} (tried the name and with .safetensors, .pt, .bin); "
        "put the file there or fix the name after 'embedding:'"
    )
