"""``tiny-wan``: a random-weight Wan 2.1 image-to-video pipeline at toy size (the real classes, ~50 k parameters),
built offline.

Like ``tiny``, it is built once into our cache folder with ``save_pretrained`` and then loaded through exactly the
same folder loader as the real model, so every run on it exercises the real loading path. It keeps the real
model's shape rules: 4N+1 frames (a causal VAE with 4× time and 8× space compression), sides multiple of 16,
16 latent channels and a transformer that takes 2 × 16 + 4 = 36 input channels, UMT5 text and CLIP image
encoders, a flow-matching UniPC scheduler. Its sizes are toy ones (about 112×64 and 160×96 pixels). Its videos are
noise.
"""
from __future__ import annotations

import dataclasses
import logging
import string
from pathlib import Path

from i2v.backends.builtin import BuiltInModel, built_folder
from i2v.backends.wan.backend import WAN_SPEC, WanBackend
from i2v.backends.wan.config import SCHEDULER_CONFIG

log = logging.getLogger(__name__)

TINY_WAN_NAME = "tiny-wan"
TINY_BUILD_SEED = 0
TINY_LATENT_CHANNELS = 16  # as the real VAE, so the transformer takes the real 36 input channels
_TEXT_DIM = 16  # UMT5 d_model = transformer text_dim
_IMAGE_DIM = 8  # CLIP vision hidden size = transformer image_dim
_HEADS, _HEAD_DIM = 2, 12  # the rotary embedding splits the head into time/height/width parts: 4 + 4 + 4

TINY_WAN_SPEC = dataclasses.replace(
    WAN_SPEC,
    family="Wan 2.1 I2V (tiny, random weights)",
    min_side=32,
    max_side=256,
    # Named like the real tiers, by the short side at Wan's 16:9-ish aspect: "64p" ≈ 112×64, "96p" ≈ 160×96.
    resolution_tiers=(64, 96),
    tier_areas=((64, 112 * 64), (96, 160 * 96)),
    native_size=(112, 64),
    random_weights=True,
    preset_key="tiny-wan",  # toy sizes, short clips and few steps, so every tier runs on a CPU in seconds
    notes=("Random weights: the output is noise. For trying the app and for tests.",),
    # The real model's VRAM model at this build's widths and parameter counts (a test keeps them equal), so the
    # memory planner runs for it on a (fake) GPU: its predictions are the CUDA context and little else.
    memory=dataclasses.replace(WAN_SPEC.memory.scaled(
        transformer_width=_HEADS * _HEAD_DIM / 5120, vae_width=4 / 96, text_width=_TEXT_DIM / 4096,
        transformer_params=19_384, text_encoder_params=5_696, image_encoder_params=2_912, vae_params=21_819,
    ), transformer_fp32_params=0),
)



def build_tiny_tokenizer():
    """A character-level T5 (Unigram) tokenizer from a written vocabulary: no download, no SentencePiece file.
    Ids as UMT5's: pad 0, end of sequence 1, unknown 2."""
    from transformers import T5Tokenizer

    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -1.0) for c in chars] + [("\u2581" + c, -1.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_components(*, latent_channels: int = TINY_LATENT_CHANNELS, transformer_in_channels: int | None = None,
                          transformer_out_channels: int | None = None) -> dict:
    """The components in memory, deterministic weights. Channel counts other than the defaults build a
    deliberately broken (or differently shaped) model, for the load-time checks' tests."""
    import torch
    import transformers
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    tokenizer = build_tiny_tokenizer()
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=_TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
            dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        ))
        image_encoder = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=_IMAGE_DIM, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            patch_size=8, projection_dim=_IMAGE_DIM,
        ))
        # Four levels (8× space), time halved twice (4×): the real VAE's compression at 4 channels per level.
        vae = AutoencoderKLWan(
            base_dim=4, z_dim=latent_channels, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * latent_channels, latents_std=[1.0] * latent_channels,
        )
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=_HEADS, attention_head_dim=_HEAD_DIM,
            in_channels=transformer_in_channels or 2 * latent_channels + 4,
            out_channels=transformer_out_channels or latent_channels, text_dim=_TEXT_DIM, freq_dim=32, ffn_dim=32,
            num_layers=1, image_dim=_IMAGE_DIM, added_kv_proj_dim=_HEADS * _HEAD_DIM, rope_max_seq_len=64,
        )
    finally:
        torch.random.set_rng_state(rng_state)
    # transformers 5 without torchvision: the PIL processor (the generic name warns and falls back to it).
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "image_encoder": image_encoder, "vae": vae,
            "transformer": transformer, "image_processor": processor_cls(crop_size=32, size=32),
            "scheduler": UniPCMultistepScheduler(**SCHEDULER_CONFIG)}


def build_tiny_pipeline(**shape):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline(**build_tiny_components(**shape))


def tiny_wan_folder() -> Path:
    return built_folder(TINY_WAN_NAME, build_tiny_pipeline)


class TinyWanBackend(BuiltInModel, WanBackend):
    spec = TINY_WAN_SPEC
    built_in_name = TINY_WAN_NAME
    real_model = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    build_pipeline = staticmethod(build_tiny_pipeline)
