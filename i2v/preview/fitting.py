"""Fitting a model's ``LatentRgbMap`` from its own VAE, once per model revision (``store`` keeps the result).

We encode a few synthetic still clips with the VAE encoder (``backend.encode_preview_clip``: the family knows its
VAE's input layout and the normalisation its denoiser works in) and pair every latent pixel with the average colour
of the picture area it covers. Encoding rather than decoding random latents: the encoder's latents of real-looking
colours are what a denoised video ends up as, and random latents sit where no video ever goes.
"""
from __future__ import annotations

import logging
import time

from i2v.preview.latent_map import LatentRgbMap

log = logging.getLogger(__name__)

PICTURES = 8  # at 12×12 latent pixels and 1-3 latent frames each: 1,000-3,500 pairs for up to 129 unknowns
LATENT_SIDE = 12  # latent pixels per side of a fitting picture: small enough to encode in well under a second
FIT_FRAMES = 9  # asked for; snapped to the model's frame rule (9 is valid for 4N+1 and 8N+1 alike)
FIT_SEED = 20261205  # the same pictures for every fit, so a refit gives the same map


def fit_map(backend) -> LatentRgbMap:
    """The map for ``backend``'s loaded model (the VAE runs on its execution device, a few small encodes)."""
    import torch

    spec = backend.spec
    side = LATENT_SIDE * spec.vae_scale_factor
    frames = spec.frame_rule.nearest(FIT_FRAMES, spec.min_frames, max(spec.max_frames, FIT_FRAMES))
    started = time.perf_counter()
    latents, colours = [], []
    generator = torch.Generator().manual_seed(FIT_SEED)
    for index in range(PICTURES):
        picture = synthetic_picture(side, generator, index)  # (3, side, side) in 0..1
        clip = (picture * 2 - 1)[None, :, None].expand(1, 3, frames, side, side).contiguous()
        encoded = backend.encode_preview_clip(clip).float().cpu()  # (channels, latent frames, h, w)
        channels, latent_frames, h, w = encoded.shape
        pooled = torch.nn.functional.adaptive_avg_pool2d(picture[None], (h, w))[0]  # (3, h, w)
        latents.append(encoded.permute(1, 2, 3, 0).reshape(-1, channels))
        colours.append(pooled.permute(1, 2, 0).reshape(1, h * w, 3).expand(latent_frames, -1, -1).reshape(-1, 3))
    fitted = LatentRgbMap.fit(torch.cat(latents), torch.cat(colours))
    log.info("fitted the live-preview map of %s: %d latent channels, %d pixel pairs, RMS error %.3f, %.2f s",
             backend.model_id, fitted.channels, sum(len(c) for c in colours), fitted.fit_residual,
             time.perf_counter() - started)
    return fitted


def synthetic_picture(side: int, generator, index: int):
    """A picture with large flat colour regions and smooth gradients over the whole colour cube: coarse random
    colours blown up smoothly, plus saturated blocks (pure and mixed primaries, black, white) so the extremes are
    in the fit too. (3, side, side) float32 in 0..1."""
    import torch

    coarse = torch.rand(1, 3, 3 + index % 3, 3 + index % 3, generator=generator)
    picture = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=True)[0]
    corners = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]],
                           dtype=torch.float32)
    block = side // 4
    for slot in range(2):
        colour = corners[(index * 2 + slot) % len(corners)]
        top = int(torch.randint(0, side - block + 1, (1,), generator=generator))
        left = int(torch.randint(0, side - block + 1, (1,), generator=generator))
        picture[:, top:top + block, left:left + block] = colour[:, None, None]
    return picture.clamp_(0.0, 1.0)
