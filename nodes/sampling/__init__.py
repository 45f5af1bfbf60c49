"""Diffusion sampling with ComfyUI's semantics: noise, model sampling, schedules, samplers and CFG."""
