"""Workflow formats: ComfyUI API prompts, UI graphs and their conversion, and workflows in media metadata."""
