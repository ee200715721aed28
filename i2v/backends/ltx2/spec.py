"""What LTX-2 image-to-video is, before anything loads: its spec (the 8N+1 frame rule, sides multiple of 32, its own
24 fps, sound), the memory profile, and how a hub id says it is LTX-2."""
from __future__ import annotations

import re

from i2v.memory.transformer import TransformerMemoryProfile
from i2v.spec import FrameRule, ModelSpec

# Gemma reads up to 1024 tokens (the pipeline's max_sequence_length): prompts are padded to that length.
TEXT_TOKENS = 1024
# diffusers' DISTILLED_SIGMA_VALUES (pipelines/ltx2/utils.py, from Lightricks' ltx-pipelines): 8 fixed sigmas for
# the distilled model (or the dev model with the distilled LoRA), run without guidance. A test keeps the count equal.
DISTILLED_SCHEDULE, DISTILLED_STEPS = "distilled", 8

# "ltx-2", "ltx2", "LTX-2.3" name LTX-2; "LTX-Video" (LTX 0.9.x, another pipeline) does not.
_LTX2_NAME = re.compile(r"(?<![a-z0-9])ltx-?2(?![0-9])")


def is_ltx2_hub_id(model: str) -> bool:
    """A hub id whose name says LTX-2 (``Lightricks/LTX-2``, ``someone/ltx2-i2v-merge``)."""
    return bool(_LTX2_NAME.search(model.lower()))


LTX2_SPEC = ModelSpec(
    family="LTX-2 I2V",
    # The causal video VAE keeps the first frame and folds every further 8 into one latent frame: 8N+1 frames.
    frame_rule=FrameRule(step=8, offset=1),
    min_frames=9,
    max_frames=257,  # about 10 s at 24 fps; the pipeline's own default is 121 (5 s)
    size_multiple=32,  # the VAE compresses 32× in space and the transformer takes 1×1 patches
    min_side=256,
    max_side=1536,
    max_aspect=2.0,
    latent_channels=128,
    vae_scale_factor=32,
    # bf16 as the model card and the pipeline's example; float16 risks overflow (NaN), so without bf16: fp32.
    preferred_dtypes=("bfloat16", "float32"),
    # Tiers by area, as I2VGen-XL's: 512p ≈ 640×416 at 3:2, 768p ≈ 960×640. The pipeline's default 768×512 lies
    # between them.
    resolution_tiers=(512, 768),
    native_size=(768, 512),
    preset_key="ltx2",
    max_prompt_tokens=TEXT_TOKENS,
    steps_range=(1, 250),
    guidance_range=(1.0, 20.0),
    fps_range=(1, 60),
    default_frames=121,
    default_steps=30,
    default_guidance=3.0,  # the video guidance; the audio keeps the pipeline's own (7.0)
    default_fps=24,
    has_audio=True,
    takes_loras=True,  # LTX2LoraLoaderMixin (transformer and text connectors)
    fixed_schedules=((DISTILLED_SCHEDULE, DISTILLED_STEPS),),
    notes=(
        "Generates sound with the picture: the mp4 carries an AAC track at the vocoder's sample rate (24 kHz for "
        "LTX-2); switch audio off to leave it out.",
        "8N+1 frames (121 is 5 s at 24 fps); sides multiple of 32. Reads prompts with Gemma 3 (up to 1024 tokens): "
        "describe the scene, the motion and the sound.",
    ),
    # Parameters: config.parameter_counts() (a test keeps them equal) for LTX-2.0 (19 B transformer, Gemma 3 12B,
    # 1.4 B text connectors, 1.2 B video VAE; the audio figure is the audio VAE with the vocoder). Activations:
    # ESTIMATED, NOT TRACED (docs/VRAM.md): the denoiser's per-token cost is Wan 2.1's traced figure scaled to LTX-2's
    # feed-forward (16384 wide against 13824), tokens at 1/32 size and 1/8 time (patch 1); the VAE works at 1/4 size
    # after its 4×4 patch and decodes every frame in one call, so its cost is per frame pixel; tiling is not
    # credited (the prediction stays an upper bound). The pipeline calls the transformer with batch 2 under guidance
    # (then batch-1 passes for its spatio-temporal and modality guidance) and encodes the picture alone, while the
    # text connectors (offload chain: text_encoder -> connectors -> transformer -> vae -> audio_vae -> vocoder) are
    # still on the GPU. Two stages (the high-quality tier): docs/VRAM.md, "Two stages".
    memory=TransformerMemoryProfile(
        transformer_params=18_876_174_592, transformer_blocks=48, transformer_block_params=18_531_581_952,
        text_encoder_params=12_202_563_392,
        text_encoder_largest_layer_params=1_011_597_312, connector_params=1_431_475_200,
        vae_params=1_222_479_601, audio_params=53_248_146 + 55_592_802, upsampler_params=497_867_904,
        cfg_batch=2, patch_size=1, vae_scale_factor=32, temporal_compression=8,
        denoise_fixed=60_000_000, denoise_per_token=136_000, text_activation=800_000_000,
        encodes_clip=False, encode_resident=("connectors", "vae"), encode_per_pixel=1_000,
        encode_per_frame_pixel=0, decode_per_call_pixel=0, decode_per_frame_pixel=340, vae_tile=(512, 512),
        decode_tiled_per_call_pixel=0, decode_tiled_per_frame_pixel=340,
    ),
)
