"""``tiny-ltx2``: a random-weight LTX-2 image-to-video pipeline at toy size (the real classes, about a million
parameters), built offline.

Like the other built-in models, it is saved once into our cache folder and loaded back through the same folder
loader as the real model. It keeps the real model's shape rules: 8N+1 frames and sides multiple of 32 (a video VAE
with 32× space and 8× time compression), a transformer that denoises video and audio together, an audio VAE
(16 kHz mel spectrograms, hop 160) and a vocoder with the real upsampling (×240) to the real 24 kHz stereo, a Gemma 3
text encoder read through the text connectors. Its sizes are toy ones (64×64 and 128×96 pixels); its videos are
noise and its sound is noise.

Its ×2 latent upsampler, for the two-stage path, is a built-in part of its own (``tiny-ltx2-latent-upsampler``): the
real class and layout (``LTX2LatentUpsamplerModel``'s defaults: 3-D residual blocks around a ×2 spatial resampler)
at 32 wide with one block per side, for the tiny model's 8 latent channels, saved the same way and loaded through the
same upsampler loader as the real one.
"""
from __future__ import annotations

import dataclasses
import string
from pathlib import Path

from i2v.backends.builtin import BuiltInModel, built_folder
from i2v.backends.ltx2.backend import LTX2Backend
from i2v.backends.ltx2.config import SCHEDULER_CONFIG
from i2v.backends.ltx2.loading import ltx2_module
from i2v.backends.ltx2.spec import LTX2_SPEC

TINY_LTX2_NAME = "tiny-ltx2"
TINY_UPSAMPLER_NAME = "tiny-ltx2-latent-upsampler"
TINY_BUILD_SEED = 0
TINY_LATENT_CHANNELS = 8
_TEXT_DIM, _TEXT_LAYERS = 16, 2  # Gemma hidden size = connectors caption_channels; layers + 1 = text_proj_in_factor
_AUDIO_LATENT_CHANNELS, _MEL_BINS = 2, 16  # the transformer reads 2 × 16/4 = 8 audio channels per latent step

TINY_LTX2_SPEC = dataclasses.replace(
    LTX2_SPEC,
    family="LTX-2 I2V (tiny, random weights)",
    min_frames=9,
    max_frames=49,
    min_side=32,
    max_side=256,
    latent_channels=TINY_LATENT_CHANNELS,
    # Named like the real tiers, by area: "64p" ≈ 64×64, "96p" ≈ 128×96 at 3:2 (sides multiple of 32).
    resolution_tiers=(64, 96),
    native_size=(96, 64),
    random_weights=True,
    preset_key="tiny-ltx2",  # toy sizes, short clips and few steps, so every tier runs on a CPU in seconds
    notes=("Random weights: the output is noise (and so is its sound). For trying the app and for tests.",),
    # The real model's VRAM model at this build's widths and parameter counts (a test keeps them equal), so the
    # memory planner runs for it on a (fake) GPU.
    memory=LTX2_SPEC.memory.scaled(
        transformer_width=16 / 4096, vae_width=8 / 256, text_width=_TEXT_DIM / 3840,
        transformer_params=31_208, text_encoder_params=12_472, connector_params=7_520, vae_params=565_343,
        audio_params=161_902 + 61_179, upsampler_params=161_896,
    ),
)


def build_tiny_tokenizer():
    """A character-level Gemma tokenizer from a written vocabulary (no merges): no download, no SentencePiece file."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for char in string.printable:
        if not char.isspace():
            vocab.setdefault(char, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[])


def build_tiny_components(*, latent_channels: int = TINY_LATENT_CHANNELS, transformer_in_channels: int | None = None,
                          vocoder_in_channels: int | None = None) -> dict:
    """The components in memory, deterministic weights. Channel counts other than the defaults build a
    deliberately broken model, for the load-time checks' tests."""
    import torch
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2VideoTransformer3DModel)
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    module = ltx2_module()
    tokenizer = build_tiny_tokenizer()
    audio_channels = _AUDIO_LATENT_CHANNELS * _MEL_BINS // 4
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        text_encoder = Gemma3ForConditionalGeneration(Gemma3Config(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=_TEXT_DIM, intermediate_size=32,
                             num_hidden_layers=_TEXT_LAYERS, num_attention_heads=2, num_key_value_heads=1,
                             head_dim=8, max_position_embeddings=2048, sliding_window=64, query_pre_attn_scalar=8),
            vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                               image_size=28, patch_size=14),
            mm_tokens_per_image=4,
        ))
        connectors = module.LTX2TextConnectors(
            caption_channels=_TEXT_DIM, text_proj_in_factor=_TEXT_LAYERS + 1,
            video_connector_num_attention_heads=2, video_connector_attention_head_dim=8,
            video_connector_num_layers=1, video_connector_num_learnable_registers=8,
            audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=8,
            audio_connector_num_layers=1, audio_connector_num_learnable_registers=8,
        )
        # The real layout at 1/32 of the width: four down blocks (space, time, both, both) after a 4×4 patch, three
        # up blocks: 32× space and 8× time, declared as such (the constructor's defaults would declare 64× and 16×).
        vae = AutoencoderKLLTX2Video(
            latent_channels=latent_channels, block_out_channels=(8, 16, 32, 64), decoder_block_out_channels=(8, 16, 32),
            layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
            spatial_compression_ratio=32, temporal_compression_ratio=8,
        )
        audio_vae = AutoencoderKLLTX2Audio(
            base_channels=audio_channels, output_channels=2, ch_mult=(1, 2, 4), num_res_blocks=1,
            latent_channels=_AUDIO_LATENT_CHANNELS, mel_bins=_MEL_BINS,
        )
        # The real upsampling (6·5·2·2·2 = 240 samples per mel frame: 100 mel frames/s → 24 kHz) at a toy width.
        vocoder = module.LTX2Vocoder(in_channels=vocoder_in_channels or 2 * _MEL_BINS, hidden_channels=32,
                                     out_channels=2)
        transformer = LTX2VideoTransformer3DModel(
            in_channels=transformer_in_channels or TINY_LATENT_CHANNELS, out_channels=TINY_LATENT_CHANNELS,
            num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, audio_in_channels=audio_channels,
            audio_out_channels=audio_channels, audio_num_attention_heads=2, audio_attention_head_dim=4,
            audio_cross_attention_dim=8, num_layers=1, caption_channels=_TEXT_DIM,
        )
    finally:
        torch.random.set_rng_state(rng_state)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "connectors": connectors, "vae": vae,
            "audio_vae": audio_vae, "vocoder": vocoder, "transformer": transformer,
            "scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)}


def build_tiny_pipeline(**shape):
    return ltx2_module().LTX2ImageToVideoPipeline(**build_tiny_components(**shape))


def tiny_ltx2_folder() -> Path:
    return built_folder(TINY_LTX2_NAME, build_tiny_pipeline)


def build_tiny_upsampler(latent_channels: int = TINY_LATENT_CHANNELS):
    """The upsampler at toy size, deterministic weights (32 wide: GroupNorm's 32 groups need a multiple of 32)."""
    import torch

    rng_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        return ltx2_module().LTX2LatentUpsamplerModel(in_channels=latent_channels, mid_channels=32,
                                                       num_blocks_per_stage=1)
    finally:
        torch.random.set_rng_state(rng_state)


def tiny_upsampler_folder() -> Path:
    return built_folder(TINY_UPSAMPLER_NAME, build_tiny_upsampler, marker="config.json")


class TinyLTX2Backend(BuiltInModel, LTX2Backend):
    spec = TINY_LTX2_SPEC
    built_in_name = TINY_LTX2_NAME
    real_model = "Lightricks/LTX-2"
    build_pipeline = staticmethod(build_tiny_pipeline)
