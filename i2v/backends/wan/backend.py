"""Wan 2.1 image-to-video (``Wan-AI/Wan2.1-I2V-14B-480P-Diffusers``, ``…-720P-Diffusers``) through diffusers'
``WanImageToVideoPipeline``, from a hub id or a local folder whose model_index.json names that pipeline.

Loading (``wan_loading.py``) follows the CogVideoX backend: each component on its own so weight-key problems are
reported, then the components are checked against each other. The transformer reads, per latent pixel, the noise latents, the VAE
latents of the condition video (the picture, then zeros) and a 4-channel first-frame mask (one channel per frame
that the VAE folds into a latent frame): ``prepare_latents`` in ``pipeline_wan_i2v.py``. So its input channels must
be 2 × the VAE's latent channels + 4 (16 + 16 + 4 = 36 for the real model).

Wan 2.2 image-to-video (two transformers, no CLIP image encoder) and Wan 2.1 first-last-frame checkpoints are
refused at load with a clear message: same pipeline class, different inputs and defaults.

Hub ids are routed here by name (see ``is_wan_i2v_hub_id``): "wan" as a word of its own (not inside "swan" or
"rowan") and "i2v" anywhere in the id.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from i2v.findings import Finding
from i2v.memory.plan import ExecutionPlan
from i2v.spec import FrameRule, ModelSpec
from i2v.memory.transformer import TransformerMemoryProfile
from i2v.backends.base import DenoiseInputs, LoadReport, StepCallback
from i2v.backends.pipeline_backend import PipelineBackend, latent_run_arguments, torch_dtype
from i2v.backends.wan.loading import FLOW_SHIFT_KEYS, VAE_DTYPE, download_or_cached, load_wan_from_folder

log = logging.getLogger(__name__)

# The I2V transformer splits its cross-attention context as "image tokens, then exactly 512 text tokens" (the
# number is hard-coded in diffusers' WanAttnProcessor), so prompts are always padded to 512 UMT5 tokens.
TEXT_TOKENS = 512
# Wan's own sampler (generate.py): shift 3.0 for 480p image-to-video, 5.0 for larger sizes. The diffusers repos of
# both checkpoints ship STOCK_SHIFT; a checkpoint that declares another value chose it and keeps it.
STOCK_SHIFT = 3.0
SMALL_SHIFT, LARGE_SHIFT = 3.0, 5.0

_WAN_WORD = re.compile(r"(?<![a-z])wan(?![a-z])")


def is_wan_i2v_hub_id(model: str) -> bool:
    """A hub id whose name says Wan image-to-video: "wan" not inside another word (so "someone/swan-i2v" and
    "rowan/…-i2v" stay with I2VGen-XL) and "i2v" anywhere (Wan2.1-I2V-14B-480P-Diffusers, my-wan21-i2v-merge)."""
    lowered = model.lower()
    return "i2v" in lowered and bool(_WAN_WORD.search(lowered))


# -- the spec ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WanSpec(ModelSpec):
    """Wan names its sizes by area, like its own ``--size 832*480``: the video takes the picture's aspect ratio
    at about that many pixels (``generate.py``'s ``max_area``). So "480p" here is about 832 × 480 pixels and
    "720p" about 1280 × 720, not 480² and 720² as the tiers of I2VGen-XL mean."""

    tier_areas: tuple[tuple[int, int], ...] = ()  # (tier, pixels)

    def tier_area(self, tier: int) -> int:
        return dict(self.tier_areas).get(tier, tier * tier)

    def size_for_tier(self, tier: int, aspect: float) -> tuple[tuple[int, int], list[Finding]]:
        # The base class checks the tier and says when the picture is cropped to the model's aspect range.
        _, notices = super().size_for_tier(tier, aspect)
        clamped = min(max(aspect, 1.0 / self.max_aspect), self.max_aspect)
        width = math.sqrt(self.tier_area(tier) * clamped)
        return (self._round_side(width), self._round_side(width / clamped)), notices


WAN_SPEC = WanSpec(
    family="Wan 2.1 I2V 480P",
    # The causal 3D VAE keeps the first frame and folds every further 4 into one latent frame: 4N+1 frames.
    # The pipeline would only warn and round down; we snap to the nearest count up front, with a notice.
    frame_rule=FrameRule(step=4, offset=1),
    min_frames=5,
    max_frames=81,  # the training length (5 s at 16 fps): Wan 2.1 was not trained on longer clips
    size_multiple=16,  # 1/8-size latents, patchified 2×2 by the transformer
    min_side=256,
    max_side=1280,
    max_aspect=1.8,  # trained at 832×480 (1.73:1) and 1280×720 (1.78:1), either way round
    latent_channels=16,
    vae_scale_factor=8,
    # Wan's authors run the transformer in bf16; float16 risks overflow (NaN → black video). Without bf16: fp32.
    preferred_dtypes=("bfloat16", "float32"),
    # Each checkpoint generates at its own training size (Wan's README: the 480P model does not do 720p, nor the
    # 720P model 480p), so each offers one tier; both areas stay known for the sampler's shift rule.
    resolution_tiers=(480,),
    tier_areas=((480, 832 * 480), (720, 1280 * 720)),
    native_size=(832, 480),
    preset_key="wan",
    max_prompt_tokens=512,  # UMT5, padded to exactly 512 (TEXT_TOKENS)
    steps_range=(1, 250),
    guidance_range=(1.0, 20.0),
    fps_range=(1, 30),
    default_frames=81,
    default_steps=40,  # Wan's generate.py: 40 steps for image-to-video (50 for text-to-video)
    default_guidance=5.0,
    default_fps=16,
    notes=(
        "480p is about 832×480 pixels at the picture's aspect ratio (the 480P checkpoint's size; for 720p load "
        "the 720P checkpoint); 4N+1 frames, up to 81 (5 s at 16 fps).",
        "Reads prompts with UMT5 (up to 512 tokens): long, descriptive prompts work well. Wan's authors also use a "
        "negative prompt listing defects (e.g. 'static, blurred details, overexposed, worst quality, deformed').",
    ),
    # Parameters: parameter_counts() (a test keeps them equal; 29.2 M of the transformer's stay in float32, the VAE is
    # float32 whatever the plan). Activations: traced at full size on the meta device (tools/trace_vram_dit.py,
    # docs/VRAM.md), not yet measured on a GPU. The pipeline calls the transformer twice per step (batch 1) and
    # encodes a whole clip (the picture, then zeros) in float32 while CLIP is still on the GPU under offload.
    memory=TransformerMemoryProfile(
        transformer_params=16_394_878_784, transformer_fp32_params=29_196_800, text_encoder_params=5_680_910_336,
        image_encoder_params=630_766_080, vae_params=126_892_531, vae_dtype=VAE_DTYPE,
        cfg_batch=1, denoise_fixed=30_233_092, denoise_per_token=114_660, text_activation=226_499_584,
        encodes_clip=True, encode_resident=("image_encoder", "vae"), encode_per_pixel=14_083,
        encode_per_frame_pixel=13, decode_per_call_pixel=19_453, decode_per_frame_pixel=13, vae_tile=(256, 256),
        decode_tiled_per_call_pixel=17_546, decode_tiled_per_frame_pixel=42,
    ),
)


WAN_720P_SPEC = dataclasses.replace(
    WAN_SPEC,
    family="Wan 2.1 I2V 720P",
    resolution_tiers=(720,),
    native_size=(1280, 720),
    preset_key="wan-720p",
    notes=("720p is about 1280×720 pixels at the picture's aspect ratio (the 720P checkpoint's size; for 480p load "
           "the 480P checkpoint); 4N+1 frames, up to 81 (5 s at 16 fps).", *WAN_SPEC.notes[1:]),
)


def is_720p_checkpoint(name: str) -> bool:
    """The 480P and 720P checkpoints have identical files but for the weights; only the name tells them apart
    (hub id or folder name). Anything not named 720P is taken as the 480P one."""
    return "720p" in name.lower()


# -- the backend -------------------------------------------------------------------------------------------
class WanBackend(PipelineBackend):
    spec = WAN_SPEC
    example_hub_id = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"

    def _load_folder(self, folder: Path, dtype: str):
        return load_wan_from_folder(folder, dtype, self.spec)

    def _download(self) -> tuple[Path, str, str | None]:
        return download_or_cached(self.model_id)

    def load(self, plan: ExecutionPlan) -> LoadReport:
        key = (plan.device, plan.dtype, plan.cpu_offload)
        if self._pipe is not None and self._loaded_key not in (None, key) and self._loaded_key[2] == plan.cpu_offload:
            # The base class would .to(device, dtype) the whole pipeline: that casts the VAE too, and the parts of
            # the transformer diffusers keeps in float32. Move, then cast the way a fresh load would have.
            self._pipe.to(plan.device)
            self.set_dtype(plan.dtype)
            self._loaded_key = key
            return self._report
        return super().load(plan)

    def set_dtype(self, dtype: str) -> None:
        pipe = self.pipeline
        for name in ("transformer", "text_encoder", "image_encoder"):  # the VAE stays in VAE_DTYPE
            cast_as_loaded(getattr(pipe, name), torch_dtype(dtype))
        if self._loaded_key is not None:
            self._loaded_key = (self._loaded_key[0], dtype, self._loaded_key[2])

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback):
        import torch

        pipe = self.pipeline
        _ensure_prompt_cleaner()
        # A CPU generator gives the same starting noise on every device for a seed. The picture's latents are the
        # VAE's mode (the pipeline's sample_mode="argmax"), so nothing else in the run draws random numbers.
        generator = torch.Generator("cpu").manual_seed(inputs.seed)

        with _flow_shift_for_run(pipe, self.spec, inputs.width, inputs.height):
            output = pipe(
                image=inputs.image,
                prompt=inputs.prompt,
                negative_prompt=inputs.negative_prompt or None,
                **latent_run_arguments(inputs, generator, on_step),
                max_sequence_length=TEXT_TOKENS,
            )
        return output.frames  # latents, (batch, channels, latent frames, height/8, width/8), float32

    def decode(self, latents, plan: ExecutionPlan, *, dtype: str | None = None):
        """Latents → (1, 3, frames, height, width) in [-1, 1]. The causal VAE decodes the clip latent frame by latent
        frame with a temporal cache, so ``plan.decode_chunk_size`` does not apply; tiling and slicing do."""
        import torch

        with self._vae_for_decode(plan, dtype) as (vae, target), torch.no_grad():
            # The execution device, not vae.device: under model offload the VAE waits on the CPU until its
            # decode hook moves it, and latents left there would meet a GPU VAE.
            latents = latents.to(device=self.pipeline._execution_device, dtype=target)
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents)
            inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents)
            # Written as the pipeline writes it (divide by 1/std), so our frames equal its own decode bit for bit.
            return vae.decode(latents / inverse_std + mean, return_dict=False)[0]


class Wan720PBackend(WanBackend):
    spec = WAN_720P_SPEC
    example_hub_id = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"


def wan_backend_class(name: str) -> type[WanBackend]:
    return Wan720PBackend if is_720p_checkpoint(name) else WanBackend


def cast_as_loaded(model, dtype) -> None:
    """Cast ``model`` in place to ``dtype`` the way ``from_pretrained(dtype=...)`` loads it. diffusers keeps the
    modules a model lists in ``_keep_in_fp32_modules`` in float32 (Wan's transformer: the rotary tables, the time
    embedder, the norms, scale_shift_table); a plain ``.to(dtype)`` rounds them to bf16 for good (the rotary tables
    are computed at construction, not reloaded), so a run after a float32 retry would differ from a fresh one.
    transformers applies its own list only for float16, which Wan never uses, so its models are cast whole."""
    import itertools

    import torch
    from diffusers import ModelMixin

    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ()) if isinstance(model, ModelMixin) else set()
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        wanted = torch.float32 if keep.intersection(name.split(".")) else dtype
        if tensor.is_floating_point() and tensor.dtype != wanted:
            tensor.data = tensor.data.to(wanted)


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
def _flow_shift_for_run(pipe, spec: WanSpec, width: int, height: int) -> Iterator[None]:
    """A scheduler with the shift for this size for one run; the loaded one (and its declared shift) is put back."""
    loaded = pipe.scheduler
    key = FLOW_SHIFT_KEYS[type(loaded).__name__]
    shift = flow_shift_for(spec, width, height, declared_shift(loaded))
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
