"""LTX-2's ×2 latent upsampler (``LTX2LatentUpsamplerModel``), the middle of the two-stage path: what its folder holds
(diffusers' layout: ``config.json`` naming the class and its weights, the ``latent_upsampler`` subfolder of
``Lightricks/LTX-2`` in diffusers' docs), the checks run when it loads, and the upsampling itself.

The checks refuse, naming both numbers or the class, an upsampler that cannot work here: another class, latent
channels other than the video VAE's, or a factor other than ×2 in space and none in time (the engine planned the
first stage at half the sides).
"""
from __future__ import annotations

import json
from pathlib import Path

from i2v.backends.folder_loader import load_component
from i2v.backends.ltx2.loading import ltx2_module
from i2v.errors import ModelLoadError
from i2v.findings import Finding

UPSAMPLER_CLASS = "LTX2LatentUpsamplerModel"
SCALE = 2  # the sides' factor the engine plans with (ModelSpec.two_staged)


def declared_upsampler_class(folder: Path) -> str:
    """The class its config.json names; refused when there is no readable config."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: no readable latent upsampler config.json ({exc}).") from exc
    return str(config.get("_class_name"))


def load_upsampler(folder: Path, dtype: str, latent_channels: int) -> tuple[object, list[Finding]]:
    """The upsampler in ``folder``, its weights in ``dtype``: (model, weight-key findings)."""
    declared = declared_upsampler_class(folder)
    if declared != UPSAMPLER_CLASS:
        raise ModelLoadError(f"{folder}: the latent upsampler is a {declared}; expected {UPSAMPLER_CLASS}.")
    found: list[Finding] = []
    model = load_component(ltx2_module().LTX2LatentUpsamplerModel, "latent_upsampler", folder, dtype, found,
                           weighted=True)
    check_upsampler(model.config, latent_channels, folder)
    return model, found


def check_upsampler(config, latent_channels: int, folder: Path) -> None:
    if config.in_channels != latent_channels:
        raise ModelLoadError(f"{folder}: the latent upsampler takes {config.in_channels} latent channels but the "
                             f"video VAE makes {latent_channels}: it belongs to another model.")
    if not config.spatial_upsample or config.temporal_upsample or config.rational_spatial_scale != SCALE:
        raise ModelLoadError(
            f"{folder}: the latent upsampler scales space ×{config.rational_spatial_scale:g} "
            f"(spatial {config.spatial_upsample}, temporal {config.temporal_upsample}); the two-stage path needs ×{SCALE} "
            "in space and nothing in time (a spatial ×2 upsampler).")


def upsample(upsampler, video_latents, device):
    """The video latents (denormalised, as the pipeline returns them with ``output_type="latent"``) with their sides
    doubled. This is ``LTX2LatentUpsamplePipeline``'s latent path for such latents (``latents_normalized=False``, no
    AdaIN, no tone mapping: the upsampler alone), called directly so that the upsampler is placed on ``device``
    ourselves: the upsample pipeline would take its device from the shared VAE, which offload may have left on the
    CPU."""
    import torch

    with torch.no_grad():
        return upsampler(video_latents.to(device=device, dtype=upsampler.dtype))
