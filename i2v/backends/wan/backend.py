"""Wan 2.1 image-to-video (``Wan-AI/Wan2.1-I2V-14B-480P-Diffusers``, ``…-720P-Diffusers``) through diffusers'
``WanImageToVideoPipeline``, from a hub id or a local folder whose model_index.json names that pipeline.

Loading (``loading.py``) follows the CogVideoX backend: each component on its own so weight-key problems are
reported, then the components are checked against each other. The transformer reads, per latent pixel, the noise latents, the VAE
latents of the condition video (the picture, then zeros) and a 4-channel first-frame mask (one channel per frame
that the VAE folds into a latent frame): ``prepare_latents`` in ``pipeline_wan_i2v.py``. So its input channels must
be 2 × the VAE's latent channels + 4 (16 + 16 + 4 = 36 for the real model).

Wan 2.2 image-to-video (two transformers, no CLIP image encoder) and Wan 2.1 first-last-frame checkpoints are
refused at load with a clear message: same pipeline class, different inputs and defaults.

Hub ids are routed here by name (see ``spec.is_wan_i2v_hub_id``): "wan" as a word of its own (not inside "swan" or
"rowan") and "i2v" anywhere in the id.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

from i2v.planning.plan import ExecutionPlan
from i2v.backends.base import DenoiseInputs, StepCallback
from i2v.backends.normalized_latents import decode_normalized, normalize
from i2v.backends.pipeline_backend import PipelineBackend, latent_run_arguments
from i2v.backends.wan.loading import FLOW_SHIFT_KEYS, HUB_ALLOW_PATTERNS, load_wan_from_folder
from i2v.backends.wan.spec import TEXT_TOKENS, WAN_720P_SPEC, WAN_SPEC, WanSpec, is_720p_checkpoint

log = logging.getLogger(__name__)

# Wan's own sampler (generate.py): shift 3.0 for 480p image-to-video, 5.0 for larger sizes. The diffusers repos of
# both checkpoints ship STOCK_SHIFT; a checkpoint that declares another value chose it and keeps it.
STOCK_SHIFT = 3.0
SMALL_SHIFT, LARGE_SHIFT = 3.0, 5.0

# -- the backend -------------------------------------------------------------------------------------------
class WanBackend(PipelineBackend):
    spec = WAN_SPEC
    example_hub_id = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    hub_allow_patterns = HUB_ALLOW_PATTERNS
    takes_transformer_file = True  # diffusers converts Wan's original GGUF key names (from_single_file)

    def _load_folder(self, folder: Path, dtype: str):
        return load_wan_from_folder(folder, dtype, self.spec, transformer_file=self.transformer_file)

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback):
        import torch

        pipe = self.pipeline
        _ensure_prompt_cleaner()
        # A CPU generator gives the same starting noise on every device for a seed. The picture's latents are the
        # VAE's mode (the pipeline's sample_mode="argmax"), so nothing else in the run draws random numbers.
        generator = torch.Generator("cpu").manual_seed(inputs.seed)

        with _flow_shift_for_run(pipe, self.spec, inputs.width, inputs.height, inputs.flow_shift), \
                self.transformer_cache_for_run():
            output = pipe(
                image=inputs.image,
                prompt=inputs.prompt,
                negative_prompt=inputs.negative_prompt or None,
                **latent_run_arguments(inputs, generator, on_step),
                max_sequence_length=TEXT_TOKENS,
            )
        return output.frames  # latents, (batch, channels, latent frames, height/8, width/8), float32

    makes_previews = True

    def preview_latents(self, latents, inputs: DenoiseInputs):
        return latents[0]  # (1, channels, frames, h, w), per-channel normalised

    def encode_preview_clip(self, video):
        return normalize(self.pipeline.vae, self._encode_for_preview(video))[0]

    def decode(self, latents, plan: ExecutionPlan, *, dtype: str | None = None):
        """Latents → (1, 3, frames, height, width) in [-1, 1]. The causal VAE decodes the clip latent frame by latent
        frame with a temporal cache, so ``plan.decode_chunk_size`` does not apply; tiling and slicing do."""
        import torch

        with self._vae_for_decode(plan, dtype) as (vae, target), torch.no_grad():
            # The execution device, not vae.device: under model offload the VAE waits on the CPU until its
            # decode hook moves it, and latents left there would meet a GPU VAE.
            latents = latents.to(device=self.pipeline._execution_device, dtype=target)
            return decode_normalized(vae, latents)


class Wan720PBackend(WanBackend):
    spec = WAN_720P_SPEC
    example_hub_id = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"


def wan_backend_class(name: str) -> type[WanBackend]:
    return Wan720PBackend if is_720p_checkpoint(name) else WanBackend


# -- the sampler's shift -----------------------------------------------------------------------------------
def flow_shift_for(spec: WanSpec, width: int, height: int, declared: float) -> float:
    """Wan's rule (``generate.py``): shift 3.0 at 480p, 5.0 above. "480p" is any size nearer (geometrically) to the
    smallest tier's area than to the next one's. A checkpoint whose scheduler declares a non-stock shift keeps it."""
    if not math.isclose(declared, STOCK_SHIFT):
        return declared
    areas = sorted(area for _, area in spec.tier_areas) or sorted(spec.tier_area(t) for t in spec.resolution_tiers)
    if len(areas) < 2:
        return SMALL_SHIFT
    return SMALL_SHIFT if width * height <= math.sqrt(areas[0] * areas[1]) else LARGE_SHIFT


def declared_shift(scheduler) -> float:
    return float(scheduler.config[FLOW_SHIFT_KEYS[type(scheduler).__name__]])


@contextlib.contextmanager
def _flow_shift_for_run(pipe, spec: WanSpec, width: int, height: int, tier_shift: float | None = None
                        ) -> Iterator[None]:
    """A scheduler with the shift for this size (or the step-distilled tier's) for one run; the loaded one (and its
    declared shift) is put back."""
    loaded = pipe.scheduler
    key = FLOW_SHIFT_KEYS[type(loaded).__name__]
    shift = tier_shift if tier_shift is not None else flow_shift_for(spec, width, height, declared_shift(loaded))
    pipe.scheduler = type(loaded).from_config(loaded.config, **{key: shift})
    try:
        yield
    finally:
        pipe.scheduler = loaded


_PROMPT_CLEANER_CHECKED = False


class _NoFtfy:
    """Stands in for ``ftfy`` when it is not installed: the text is left as it is."""

    @staticmethod
    def fix_text(text: str) -> str:
        return text


def _ensure_prompt_cleaner() -> None:
    """diffusers' Wan pipelines call ``ftfy.fix_text`` on every prompt but import ftfy only when it is installed,
    so without it every run fails with "NameError: name 'ftfy' is not defined" (upstream: diffusers PR 12314,
    open in 0.42.1). Without ftfy the prompt is used as typed (mojibake is not repaired); we log that once."""
    global _PROMPT_CLEANER_CHECKED
    if _PROMPT_CLEANER_CHECKED:
        return
    from diffusers.pipelines.wan import pipeline_wan_i2v

    if not hasattr(pipeline_wan_i2v, "ftfy"):
        pipeline_wan_i2v.ftfy = _NoFtfy
        log.info("ftfy is not installed: Wan prompts are used as typed (install ftfy to repair mis-encoded text)")
    _PROMPT_CLEANER_CHECKED = True
