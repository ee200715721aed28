"""I2VGen-XL through diffusers, from a hub id or a local folder in diffusers layout.

Each component is loaded on its own so that missing/unexpected weight keys are collected and reported (the
pipeline-level loader drops them), and the components are checked against each other before the first run.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from pathlib import Path

from i2v.errors import ModelLoadError
from i2v.planning.plan import ExecutionPlan
from i2v.spec import FrameRule, ModelSpec
from i2v.speedups import step_cache
from i2v.memory.unet import UNetMemoryProfile
from i2v.backends.base import DenoiseInputs, StepCallback
from i2v.backends import hub
from i2v.backends.folder_loader import load_components
from i2v.backends.pipeline_backend import PipelineBackend

log = logging.getLogger(__name__)

PIPELINE_CLASS = "I2VGenXLPipeline"
# Only what the pipeline needs: the repo also holds the original multi-GB .pth checkpoint and fp16 duplicates.
HUB_ALLOW_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors"]

# Component -> (library, accepted class names). Anything else in model_index.json is refused, not imported.
_COMPONENTS = {
    "unet": ("diffusers", {"I2VGenXLUNet"}),
    "vae": ("diffusers", {"AutoencoderKL"}),
    "text_encoder": ("transformers", {"CLIPTextModel"}),
    "image_encoder": ("transformers", {"CLIPVisionModelWithProjection"}),
    "tokenizer": ("transformers", {"CLIPTokenizer", "CLIPTokenizerFast"}),
    "feature_extractor": ("transformers", {"CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPFeatureExtractor"}),
}

I2VGEN_XL_SPEC = ModelSpec(
    family="I2VGen-XL",
    frame_rule=FrameRule(1, 0),
    min_frames=2,  # the pipeline's frame position mask divides by frames - 1
    max_frames=64,
    size_multiple=64,  # 3 UNet downsamplings of latents that are 1/8 of the pixels
    min_side=256,
    max_side=2048,
    max_aspect=2.0,  # trained at 1280×704 (1.82:1)
    latent_channels=4,
    vae_scale_factor=8,
    preferred_dtypes=("bfloat16", "float16", "float32"),
    resolution_tiers=(512, 768, 1024),
    native_size=(1280, 704),
    steps_range=(1, 250),
    guidance_range=(1.0, 30.0),
    fps_range=(1, 30),
    default_frames=16,
    default_steps=50,
    default_guidance=9.0,
    default_fps=8,
    notes=("Weak on anime/cartoon images and on images with a black background (authors' note).",),
    # Parameter counts of the real architecture (i2vgen_xl_config.parameter_counts(); a test keeps them equal).
    memory=UNetMemoryProfile(unet_params=1_420_469_224, vae_params=83_653_863, text_encoder_params=352_984_064,
                         image_encoder_params=632_076_800),
)


class I2VGenXLBackend(PipelineBackend):
    spec = I2VGEN_XL_SPEC
    example_hub_id = "ali-vilab/i2vgen-xl"
    hub_allow_patterns = HUB_ALLOW_PATTERNS

    def _load_folder(self, folder: Path, dtype: str):
        return load_pipeline_from_folder(folder, dtype)

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback):
        import torch

        pipe = self.pipeline
        # vae.encode(...).latent_dist.sample() ignores the generator: seed the global RNG too.
        torch.manual_seed(inputs.seed)
        # A CPU generator gives the same starting noise on every device for a seed.
        generator = torch.Generator("cpu").manual_seed(inputs.seed)
        with _report_each_step(pipe.scheduler, inputs.steps, on_step), \
                step_cache(pipe.unet, self.speedups.step_cache_interval) as cache:
            output = pipe(
                prompt=inputs.prompt,
                image=inputs.image,
                height=inputs.height,
                width=inputs.width,
                target_fps=inputs.fps,
                num_frames=inputs.frames,
                num_inference_steps=inputs.steps,
                guidance_scale=inputs.guidance,
                negative_prompt=inputs.negative_prompt or None,
                generator=generator,
                output_type="latent",
            )
        self._step_cache_stats = cache.to_dict() if self.speedups.step_cache_interval > 1 else None
        return output.frames

    makes_previews = True

    def preview_latents(self, latents, inputs: DenoiseInputs):
        """The scheduler wrapper sees the pipeline's step latents with the frames folded into the batch:
        (frames, channels, h, w)."""
        return latents.permute(1, 0, 2, 3)

    def encode_preview_clip(self, video):
        """The image VAE encodes the frames as a batch; the pipeline scales the picture's latents by the VAE's
        ``scaling_factor`` (``prepare_image_latents``), so the denoiser works in that scale."""
        frames = video[0].permute(1, 0, 2, 3)
        return (self._encode_for_preview(frames) * self.pipeline.vae.config.scaling_factor).permute(1, 0, 2, 3)

    def decode(self, latents, plan: ExecutionPlan, *, dtype: str | None = None):
        with self._vae_for_decode(plan, dtype) as (_vae, target):
            return self.pipeline.decode_latents(latents.to(target), decode_chunk_size=plan.decode_chunk_size)


@contextlib.contextmanager
def _report_each_step(scheduler, total: int, on_step: StepCallback):
    """I2VGen-XL's pipeline has no step callback: wrap the scheduler's ``step`` on this instance only.
    ``functools.wraps`` keeps the signature the pipeline inspects for ``eta``/``generator``."""
    original = scheduler.step
    done = 0

    @functools.wraps(original)
    def step(*args, **kwargs):
        nonlocal done
        result = original(*args, **kwargs)
        done += 1
        on_step(done, total, result.prev_sample if hasattr(result, "prev_sample") else result[0])
        return result

    scheduler.step = step
    try:
        yield
    finally:
        del scheduler.step


# -- loading helpers ---------------------------------------------------------------------------------------
def read_model_index(folder: Path) -> dict:
    return hub.read_model_index(folder, PIPELINE_CLASS)


def load_pipeline_from_folder(folder: Path, dtype: str):
    """Load every component from ``folder``; return (pipeline, warnings, component class names)."""
    import diffusers

    loaded, found, classes = load_components(folder, read_model_index(folder), _COMPONENTS, dtype,
                                             weighted=("unet", "vae", "text_encoder", "image_encoder"))
    check_components_agree(loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the pipeline's deprecation notice, once per load
        pipe = diffusers.I2VGenXLPipeline(**loaded)
    return pipe, found, classes


def check_components_agree(components: dict) -> None:
    """Shape mistakes fail late and confusingly inside the first UNet call; catch them at load time."""
    unet, vae = components["unet"].config, components["vae"].config
    text_cfg, image_cfg = components["text_encoder"].config, components["image_encoder"].config
    checks = [
        ("VAE latent channels", vae.latent_channels, "UNet input channels", unet.in_channels),
        ("text encoder hidden size", text_cfg.hidden_size, "UNet cross-attention dim", unet.cross_attention_dim),
        ("image encoder projection dim", image_cfg.projection_dim, "UNet cross-attention dim",
         unet.cross_attention_dim),
    ]
    for left_name, left, right_name, right in checks:
        if left != right:
            raise ModelLoadError(
                f"The model's components do not fit together: {left_name} is {left} but {right_name} is {right}."
            )
