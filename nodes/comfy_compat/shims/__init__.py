"""Modules installed under ComfyUI's names while packs load and run (folder_paths, comfy.utils, ...)."""
