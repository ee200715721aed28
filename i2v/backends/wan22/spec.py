"""What Wan 2.2 image-to-video is, before anything loads: the specs of TI2V-5B (one 5 B transformer, the 48-channel
Wan 2.2 VAE with 16× space compression, 1280×704 at 24 fps) and I2V-A14B (two 14 B experts that take turns, the
Wan 2.1 VAE, 480p and 720p at 16 fps, an optional last frame), and how a hub id says which one it is."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from i2v.findings import Finding
from i2v.memory.transformer import TransformerMemoryProfile
from i2v.spec import FrameRule, ModelSpec

# UMT5 prompts are padded to exactly 512 tokens, as in Wan 2.1.
TEXT_TOKENS = 512
# The VAE runs in float32 whatever the plan's dtype, as Wan's authors and the diffusers examples decode.
VAE_DTYPE = "float32"

_WAN22 = re.compile(r"(?<![a-z])wan[-_ ]?2\.?2(?![0-9])")


def wan22_kind(model: str) -> str | None:
    """"ti2v-5b", "a14b", "t2v" or None for a hub id: "Wan2.2" (or wan22, wan-2.2) as a word of its own, then
    "ti2v" (TI2V-5B), "i2v" (I2V-A14B) or "t2v" (text-to-video, refused by the registry). Wan 2.2 animate, S2V and
    the rest are none of ours (None)."""
    lowered = model.lower()
    if not _WAN22.search(lowered):
        return None
    for marker, kind in (("ti2v", "ti2v-5b"), ("i2v", "a14b"), ("t2v", "t2v")):
        if marker in lowered:
            return kind
    return None


@dataclass(frozen=True)
class Wan22Spec(ModelSpec):
    """Sizes by area, like Wan's own ``--size 1280*704``: the video takes the picture's aspect ratio at about the
    tier's area (``generate.py``'s ``max_area``), so "720p" is about 1280 × 704 (TI2V-5B) or 1280 × 720 pixels."""

    tier_areas: tuple[tuple[int, int], ...] = ()  # (tier, pixels)

    def tier_area(self, tier: int) -> int:
        return dict(self.tier_areas).get(tier, tier * tier)

    def size_for_tier(self, tier: int, aspect: float) -> tuple[tuple[int, int], list[Finding]]:
        _, notices = super().size_for_tier(tier, aspect)  # checks the tier, says when the picture is cropped
        clamped = min(max(aspect, 1.0 / self.max_aspect), self.max_aspect)
        width = math.sqrt(self.tier_area(tier) * clamped)
        return (self._round_side(width), self._round_side(width / clamped)), notices


_UMT5_NOTE = ("Reads prompts with UMT5 (up to 512 tokens): long, descriptive prompts work well; a negative prompt "
              "listing defects (e.g. 'static, blurred details, overexposed, worst quality') helps.")

# -- TI2V-5B -----------------------------------------------------------------------------------------------
TI2V_5B_SPEC = Wan22Spec(
    family="Wan 2.2 TI2V-5B",
    takes_loras=True,  # WanLoraLoaderMixin
    frame_rule=FrameRule(step=4, offset=1),  # the causal VAE: the first frame, then 4 per latent frame
    min_frames=5,
    max_frames=121,  # the training length: 5 s at 24 fps
    # The VAE compresses 16× (a 2×2 patchify, then 8× in its layers) and the transformer patchifies 2×2: sides in
    # multiples of 32 (the pipeline would silently round down; we snap up front, with a notice).
    size_multiple=32,
    min_side=256,
    max_side=1280,
    max_aspect=1.82,  # trained at 1280×704 (1.82:1), either way round
    latent_channels=48,
    vae_scale_factor=16,
    preferred_dtypes=("bfloat16", "float32"),  # the DiT never runs fp16 (overflow → black video)
    resolution_tiers=(720,),  # Wan 2.2's README: TI2V-5B generates 720p (1280×704 or 704×1280) only
    tier_areas=((720, 1280 * 704),),
    native_size=(1280, 704),
    preset_key="wan22-ti2v",
    max_prompt_tokens=512,
    steps_range=(1, 250),
    guidance_range=(1.0, 20.0),
    fps_range=(1, 30),
    default_frames=121,
    default_steps=50,  # wan/configs/wan_ti2v_5B.py: 50 steps, guidance 5.0, shift 5.0, 121 frames, 24 fps
    default_guidance=5.0,
    default_fps=24,
    notes=("720p is about 1280×704 pixels at the picture's aspect ratio (sides multiples of 32); 4N+1 frames, up "
           "to 121 (5 s at 24 fps). No last frame: TI2V-5B conditions on the first picture only.", _UMT5_NOTE),
    # Parameters: config.parameter_counts("ti2v-5b") (a test keeps them equal). Activations: traced at full size on
    # the meta device (tools/trace_vram_dit.py wan22-ti2v, docs/VRAM.md), not measured on a GPU. The timestep is per
    # token (expand_timesteps), so the per-token figure is 1.75× Wan 2.1 14B's despite its smaller width;
    # the pipeline encodes the picture alone and calls the transformer twice per step (batch 1); no image encoder.
    memory=TransformerMemoryProfile(
        transformer_params=4_999_787_712, transformer_blocks=30, transformer_block_params=4_909_701_120,
        transformer_fp32_params=10_973_184, text_encoder_params=5_680_910_336,
        text_encoder_largest_layer_params=1_050_173_440,
        vae_params=704_688_668, vae_dtype=VAE_DTYPE, cfg_batch=1, vae_scale_factor=16,
        denoise_fixed=12_210_176, denoise_per_token=201_236, text_activation=226_499_584,
        encodes_clip=False, encode_resident=("text_encoder", "vae"), encode_per_pixel=1_965,
        encode_per_frame_pixel=0, decode_per_call_pixel=21_486, decode_per_frame_pixel=13, vae_tile=(256, 256),
        decode_tiled_per_call_pixel=16_964, decode_tiled_per_frame_pixel=47,
    ),
)

# -- I2V-A14B ----------------------------------------------------------------------------------------------
A14B_SPEC = Wan22Spec(
    family="Wan 2.2 I2V-A14B",
    frame_rule=FrameRule(step=4, offset=1),
    min_frames=5,
    max_frames=81,  # the training length: 5 s at 16 fps
    size_multiple=16,  # 1/8-size latents, patchified 2×2
    min_side=256,
    max_side=1280,
    max_aspect=1.8,
    latent_channels=16,
    vae_scale_factor=8,
    preferred_dtypes=("bfloat16", "float32"),
    resolution_tiers=(480, 720),  # one checkpoint for both (Wan 2.2's README)
    tier_areas=((480, 832 * 480), (720, 1280 * 720)),
    native_size=(1280, 720),
    preset_key="wan22-a14b",
    max_prompt_tokens=512,
    steps_range=(1, 250),
    guidance_range=(1.0, 20.0),
    fps_range=(1, 30),
    default_frames=81,
    default_steps=40,  # wan/configs/wan_i2v_A14B.py: 40 steps, guidance 3.5 for both experts, shift 5.0
    default_guidance=3.5,
    default_fps=16,
    takes_last_image=True,
    takes_loras=True,  # WanLoraLoaderMixin: into both experts
    notes=("480p is about 832×480 and 720p about 1280×720 pixels at the picture's aspect ratio; 4N+1 frames, up to "
           "81 (5 s at 16 fps). Takes an optional last frame: the video then ends on that picture.",
           "Two 14 B experts take turns (high noise, then low noise) with the same guidance; only one is on the "
           "GPU at a time with model offload.", _UMT5_NOTE),
    # Parameters per expert: config.parameter_counts("a14b") (a test keeps them equal); two experts. Activations:
    # one expert's, traced at full size on the meta device (tools/trace_vram_dit.py wan22-a14b, docs/VRAM.md), not
    # measured on a GPU; the VAE is Wan 2.1's (same figures). The pipeline encodes a clip (picture, zeros, and the
    # last picture when given) in float32 while the text encoder is still on the GPU under offload.
    memory=TransformerMemoryProfile(
        transformer_params=14_288_901_184, transformer_blocks=40, transformer_block_params=14_055_772_160,
        transformer_fp32_params=29_184_000, text_encoder_params=5_680_910_336,
        text_encoder_largest_layer_params=1_050_173_440,
        vae_params=126_892_531, vae_dtype=VAE_DTYPE, cfg_batch=1, experts=2,
        denoise_fixed=24_311_812, denoise_per_token=114_660, text_activation=226_499_584,
        encodes_clip=True, encode_resident=("text_encoder", "vae"), encode_per_pixel=14_083,
        encode_per_frame_pixel=13, decode_per_call_pixel=19_453, decode_per_frame_pixel=13, vae_tile=(256, 256),
        decode_tiled_per_call_pixel=17_546, decode_tiled_per_frame_pixel=42,
    ),
)
