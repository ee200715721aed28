"""LTX-2.0's real architecture as configuration only (no weights): for the VRAM model's parameter counts.

Sources (no hub access from here, so these are the values we can justify, not read from the hub's config files):
the transformer, text connectors, audio VAE and vocoder are diffusers 0.42.1's constructor defaults, which are
LTX-2.0's (the docstrings say so: "default Gemma-3-12B text encoder hidden_size" 3840, text_proj_in_factor 49 =
48 Gemma layers + 1, a 48-layer transformer of 32 × 128 video and 32 × 64 audio heads, the 24 kHz vocoder); the video
VAE is its defaults with the compression the pipeline assumes when it has no VAE (32× space, 8× time: the defaults
alone would declare 64× and 16×, which their layers do not do); the text encoder is Gemma 3 12B as published by
Google (hidden 3840, 48 layers, 16 heads / 8 key-value heads of 256, feed-forward 15360, 262208 tokens, SigLIP
vision tower 1152 × 27 layers). The ×2 latent upsampler (``Lightricks/LTX-2``'s ``latent_upsampler`` subfolder, the
two-stage path) is ``LTX2LatentUpsamplerModel``'s defaults: 128 latent channels, 1024 wide, 4 residual blocks before
and after a ×2 spatial resampler (its conv has the same weights whether the resampler is the rational or the integer
kind, so the count holds for either).
"""
from __future__ import annotations

from functools import lru_cache

TRANSFORMER_CONFIG: dict = {}  # LTX2VideoTransformer3DModel's defaults
VAE_CONFIG = dict(spatial_compression_ratio=32, temporal_compression_ratio=8)  # otherwise the defaults
AUDIO_VAE_CONFIG: dict = {}
VOCODER_CONFIG: dict = {}
CONNECTORS_CONFIG: dict = {}
UPSAMPLER_CONFIG: dict = {}  # LTX2LatentUpsamplerModel's defaults
TEXT_CONFIG = dict(
    vocab_size=262_208, hidden_size=3840, intermediate_size=15_360, num_hidden_layers=48, num_attention_heads=16,
    num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256, sliding_window=1024,
)
VISION_CONFIG = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     image_size=896, patch_size=14)
# For the tiny twin: a flow-matching Euler schedule with the resolution-dependent shift at the values the pipeline
# falls back to when a scheduler config names none.
SCHEDULER_CONFIG = dict(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                        max_image_seq_len=4096)


def build_full_size_components(device: str = "meta") -> dict:
    """Every weighted component at full size with random weights (``"meta"`` allocates none)."""
    import torch
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    from i2v.backends.ltx2.loading import ltx2_module

    module = ltx2_module()
    with torch.device(device):
        return {
            "transformer": LTX2VideoTransformer3DModel(**TRANSFORMER_CONFIG),
            "vae": AutoencoderKLLTX2Video(**VAE_CONFIG),
            "audio_vae": AutoencoderKLLTX2Audio(**AUDIO_VAE_CONFIG),
            "vocoder": module.LTX2Vocoder(**VOCODER_CONFIG),
            "connectors": module.LTX2TextConnectors(**CONNECTORS_CONFIG),
            "latent_upsampler": module.LTX2LatentUpsamplerModel(**UPSAMPLER_CONFIG),
            "text_encoder": Gemma3ForConditionalGeneration(
                Gemma3Config(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG)),
        }


@lru_cache(maxsize=1)
def parameter_counts() -> dict[str, int]:
    """Parameters per component of the real architecture (counted on the meta device: no memory, seconds)."""
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in build_full_size_components().items()}
