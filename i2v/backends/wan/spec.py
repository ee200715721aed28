"""What Wan 2.1 image-to-video is, before anything loads: its spec (frame rule, sizes by area, dtypes, memory
profile) for the 480P and 720P checkpoints, and how a hub id or folder name says which one it is."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from i2v.findings import Finding
from i2v.memory.transformer import TransformerMemoryProfile
from i2v.spec import FrameRule, ModelSpec

# The I2V transformer splits its cross-attention context as "image tokens, then exactly 512 text tokens" (the
# number is hard-coded in diffusers' WanAttnProcessor), so prompts are always padded to 512 UMT5 tokens.
TEXT_TOKENS = 512
# The VAE runs in float32 whatever the plan's dtype: Wan's authors and the diffusers documentation decode in
# float32 for quality, and it is 0.13 B parameters (0.5 GiB), small beside the 16 B transformer.
VAE_DTYPE = "float32"

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
    takes_loras=True,  # WanLoraLoaderMixin
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
        transformer_params=16_394_878_784, transformer_blocks=40, transformer_block_params=16_153_538_560,
        transformer_fp32_params=29_196_800, text_encoder_params=5_680_910_336,
        text_encoder_largest_layer_params=1_050_173_440,
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
