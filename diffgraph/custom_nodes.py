"""Which custom-node folders a command loads packs from, and loading them into a registry.

Custom nodes are arbitrary Python code: packs load only from folders the user names (--custom-nodes,
the custom_nodes key of a ComfyUI extra_model_paths.yaml) or from `custom_nodes/` beside the models
folder, and every loaded pack is logged with the folder it came from.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import yaml

from engine import DiffgraphError, Environment, Registry

log = logging.getLogger(__name__)


def add_custom_node_options(parser: argparse.ArgumentParser) -> None:
    """--custom-nodes, --extra-model-paths-config and --disable-all-custom-nodes."""
    parser.add_argument(
        "--custom-nodes",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="load ComfyUI node packs from DIR (repeatable); default: custom_nodes/ beside the models folder",
    )
    parser.add_argument(
        "--extra-model-paths-config",
        action="append",
        type=Path,
        default=[],
        metavar="YAML",
        help="a ComfyUI extra_model_paths.yaml whose custom_nodes entries name more pack folders",
    )
    parser.add_argument(
        "--disable-all-custom-nodes", action="store_true", help="load no custom node packs at all"
    )


def yaml_custom_node_folders(config: Path) -> list[Path]:
    """The custom_nodes folders an extra_model_paths.yaml names (relative to each section's base_path)."""
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DiffgraphError(f"cannot read {config}: {exc}", code="bad_extra_model_paths") from exc
    folders = []
    for name, section in data.items() if isinstance(data, dict) else ():
        if not isinstance(section, dict) or "custom_nodes" not in section:
            continue
        base = Path(str(section.get("base_path", "")) or config.parent).expanduser()
        if not base.is_absolute():
            base = config.parent / base
        for line in str(section["custom_nodes"]).splitlines():
            if line.strip():
                folders.append(base / line.strip())
        log.info("extra_model_paths %s section %s: custom_nodes %s", config, name, folders)
    return folders


def custom_node_folders(args: argparse.Namespace, models_dir: Path) -> list[Path]:
    """The folders packs load from for these options (none with --disable-all-custom-nodes)."""
    if getattr(args, "disable_all_custom_nodes", False):
        return []
    folders = list(getattr(args, "custom_nodes", None) or [])
    for config in getattr(args, "extra_model_paths_config", None) or []:
        folders.extend(yaml_custom_node_folders(config))
    default = models_dir.parent / "custom_nodes"
    if not folders and default.is_dir():
        folders.append(default)
    for folder in folders:
        if not folder.is_dir():
            raise DiffgraphError(f"custom nodes folder {folder} does not exist", code="custom_nodes_missing")
    return folders


def load_packs(registry: Registry, folders: Sequence[Path], env: Environment) -> None:
    """Load the packs of these folders into the registry (imported late: it pulls in torch)."""
    if not folders:
        return
    from nodes.comfy_compat.loader import load_custom_nodes

    infos = load_custom_nodes(registry, folders, env)
    loaded = [i for i in infos if i.error is None]
    log.warning(
        "custom nodes are arbitrary code: loaded %d pack(s) from %s: %s; %d failed",
        len(loaded),
        ", ".join(str(f) for f in folders),
        ", ".join(f"{i.name} ({i.path})" for i in loaded) or "none",
        len(infos) - len(loaded),
    )
