"""Live previews: a cheap look at the video while it denoises.

A per-model linear map from latent channels to RGB (``latent_map``), fitted once from the model's own VAE
(``fitting``) and cached per model revision (``store``), turns a step's latents into small frames that
``render`` packs as an animated WebP; ``previewer`` decides on which steps that happens and makes sure a preview
failure never fails the job. No VAE decode runs during the denoising.
"""
from i2v.preview.latent_map import LatentRgbMap
from i2v.preview.previewer import PreviewSettings, StepPreviewer, preview_map
from i2v.preview.store import PreviewMaps

__all__ = ["LatentRgbMap", "PreviewMaps", "PreviewSettings", "StepPreviewer", "preview_map"]
