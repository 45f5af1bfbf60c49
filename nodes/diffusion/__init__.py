"""Diffusion model stack: family detection, checkpoint loading, tokenizer, text encoding, VAE, LoRA."""
