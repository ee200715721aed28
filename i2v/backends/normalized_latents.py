"""Decoding latents that a VAE normalises per channel (``latents_mean`` / ``latents_std`` in its config), as Wan 2.1
and Wan 2.2's ``AutoencoderKLWan`` do, and normalising them (for the live-preview fit). Here, not in either family's
folder, because a family never imports another."""
from __future__ import annotations


def decode_normalized(vae, latents):
    """Latents as the transformer leaves them → the VAE's (1, 3, frames, height, width) in [-1, 1]. Written as the
    pipelines write it (divide by 1/std), so our frames equal their own decode bit for bit."""
    import torch

    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
    inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents)
    return vae.decode(latents / inverse_std + mean, return_dict=False)[0]


def normalize(vae, latents):
    """The VAE's own latents (1, channels, frames, h, w) → the normalisation the transformer works in, as the
    pipelines normalise the picture's latents: ``(latents - mean) / std``. For fitting the live-preview map."""
    import torch

    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
    std = torch.tensor(vae.config.latents_std).view(shape).to(latents)
    return (latents - mean) / std
