"""Pure tensor math behind the latent, image and mask nodes (no node classes, no I/O)."""
