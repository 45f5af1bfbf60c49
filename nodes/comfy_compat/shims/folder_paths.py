"""ComfyUI's `folder_paths` for packs: model folders, file lists and the input/output/temp folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine import FOLDERS, MODEL_EXTENSIONS
from nodes.comfy_compat.runtime import environment

supported_pt_extensions = set(MODEL_EXTENSIONS)
# Extra folders a pack registers with add_model_folder_path: folder name -> paths.
_extra: dict[str, list[str]] = {}


def _models_root() -> Path:
    paths = environment().model_paths
    if paths is None:
        raise RuntimeError("no models folder is configured")
    return Path(paths.root)


def __getattr__(name: str) -> Any:
    # Module attributes ComfyUI computes at import; here they follow the configured folders.
    if name == "models_dir":
        return str(_models_root())
    if name == "base_path":
        return str(_models_root().parent)
    if name == "folder_names_and_paths":
        return {f: (get_folder_paths(f), supported_pt_extensions) for f in (*FOLDERS, *_extra)}
    raise AttributeError(name)


def get_folder_paths(folder_name: str) -> list[str]:
    """The directories searched for a model folder kind ("checkpoints", "loras"...)."""
    return [str(_models_root() / folder_name), *_extra.get(folder_name, [])]


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Register another directory for a folder kind (packs add their own model folders)."""
    paths = _extra.setdefault(folder_name, [])
    if full_folder_path not in paths:
        paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)


def get_filename_list(folder_name: str) -> list[str]:
    """Model file names (relative, '/'-separated) in every directory of a folder kind."""
    names: set[str] = set()
    for root in map(Path, get_folder_paths(folder_name)):
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file() and (
                    path.suffix.lower() in supported_pt_extensions or folder_name not in FOLDERS
                ):
                    names.add(path.relative_to(root).as_posix())
    return sorted(names)


def get_full_path(folder_name: str, filename: str) -> str | None:
    """The path of a model file by name, or None (names leaving the folder are refused)."""
    for root in map(Path, get_folder_paths(folder_name)):
        path = (root / filename).resolve()
        if root.resolve() in path.parents and path.is_file():
            return str(path)
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    """get_full_path, raising FileNotFoundError naming the folder when missing."""
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"model {filename!r} not found in folder {folder_name!r}")
    return path


def get_input_directory() -> str:
    """Where uploads land."""
    return str(environment().input_dir)


def get_output_directory() -> str:
    """Where outputs are saved."""
    return str(environment().output_dir)


def get_temp_directory() -> str:
    """Where previews go."""
    return str(environment().temp_dir)


def get_user_directory() -> str:
    """The user data folder (next to input/)."""
    return str(environment().input_dir.parent / "user")


def get_directory_by_type(type_name: str) -> str | None:
    """ "output", "temp" or "input" to its folder; None for anything else."""
    return {"output": get_output_directory, "temp": get_temp_directory, "input": get_input_directory}.get(
        type_name, lambda: None
    )()


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """Split "file.png [output]" into the name and the folder it names."""
    for kind in ("output", "input", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], get_directory_by_type(kind)
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    """The path of an input-style file name ("x.png", "x.png [output]"), in the input folder by default."""
    name, base = annotated_filepath(name)
    base = base or default_dir or get_input_directory()
    return os.path.join(base, name)


def exists_annotated_filepath(name: str) -> bool:
    """Whether get_annotated_filepath(name) exists."""
    return os.path.exists(get_annotated_filepath(name))


def get_save_image_path(
    filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0
) -> tuple[str, str, int, str, str]:
    """(folder, file base, next counter, subfolder, prefix) for a "sub/dir/name" prefix under output_dir."""
    subfolder, filename = os.path.split(os.path.normpath(filename_prefix))
    full_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((os.path.abspath(output_dir), os.path.abspath(full_folder))) != os.path.abspath(
        output_dir
    ):
        raise ValueError(f"filename_prefix {filename_prefix!r} leads outside the output folder")
    counter = 1
    if os.path.isdir(full_folder):
        for existing in os.listdir(full_folder):
            stem = os.path.splitext(existing)[0]
            head, _, number = stem.rpartition("_")
            if head == filename and number.isdigit():
                counter = max(counter, int(number) + 1)
    return full_folder, filename, counter, subfolder, filename_prefix
