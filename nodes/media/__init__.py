"""Media machinery the nodes share: output paths and files, latent files, live previews."""
