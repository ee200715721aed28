"""``tiny-wan22-ti2v`` and ``tiny-wan22-a14b``: random-weight Wan 2.2 pipelines at toy size (the real classes, tens
of thousands of parameters), built offline, saved once with ``save_pretrained`` and loaded back through the same
folder loader as the real checkpoints, so every run on them exercises the real loading path.

They keep the real models' shape rules: 4N+1 frames; TI2V-5B's 48-channel VAE with 16× space compression (a 2×2
patchify, then four levels) and a transformer taking those 48 channels, saved as the hub saves it (``WanPipeline``
with ``expand_timesteps`` true), sides multiple of 32; I2V-A14B's two experts (a high-noise and a low-noise
transformer, 2 × 16 + 4 = 36 input channels, switched at the real ``boundary_ratio`` 0.9) with the Wan 2.1 VAE,
sides multiple of 16. UMT5 text encoder, no image encoder, the real flow-matching UniPC scheduler (shift 5.0).
Their videos are noise."""
from __future__ import annotations

import dataclasses
import string

from i2v.backends.builtin import BuiltInModel
from i2v.backends.wan22.backend import Wan22A14BBackend, Wan22TI2VBackend
from i2v.backends.wan22.config import A14B_BOUNDARY_RATIO, A14B_SCHEDULER_CONFIG, TI2V_5B_SCHEDULER_CONFIG
from i2v.backends.wan22.spec import A14B_SPEC, TI2V_5B_SPEC

TINY_TI2V_NAME = "tiny-wan22-ti2v"
TINY_A14B_NAME = "tiny-wan22-a14b"
TINY_BUILD_SEED = 0
_TEXT_DIM = 16  # UMT5 d_model = transformer text_dim
_HEADS, _HEAD_DIM = 2, 12  # the rotary embedding splits the head into time/height/width parts: 4 + 4 + 4
_NOTE = ("Random weights: the output is noise. For trying the app and for tests.",)

# Named like the real tiers, by the short side: "64p" ≈ 96×64 and "96p" ≈ 160×96 (multiples of 32).
TINY_TI2V_SPEC = dataclasses.replace(
    TI2V_5B_SPEC, family="Wan 2.2 TI2V-5B (tiny, random weights)", min_side=32, max_side=256,
    resolution_tiers=(64, 96), tier_areas=((64, 96 * 64), (96, 160 * 96)), native_size=(96, 64),
    random_weights=True, preset_key="tiny-wan22-ti2v", notes=_NOTE,
    memory=dataclasses.replace(TI2V_5B_SPEC.memory.scaled(
        transformer_width=_HEADS * _HEAD_DIM / 3072, vae_width=4 / 160, text_width=_TEXT_DIM / 4096,
        transformer_params=22_160, text_encoder_params=5_696, vae_params=45_380,
    ), transformer_fp32_params=0),
)
# "64p" ≈ 112×64 and "96p" ≈ 160×96, as tiny-wan (multiples of 16).
TINY_A14B_SPEC = dataclasses.replace(
    A14B_SPEC, family="Wan 2.2 I2V-A14B (tiny, random weights)", min_side=32, max_side=256,
    resolution_tiers=(64, 96), tier_areas=((64, 112 * 64), (96, 160 * 96)), native_size=(112, 64),
    random_weights=True, preset_key="tiny-wan22-a14b", notes=_NOTE,
    memory=dataclasses.replace(A14B_SPEC.memory.scaled(
        transformer_width=_HEADS * _HEAD_DIM / 5120, vae_width=4 / 96, text_width=_TEXT_DIM / 4096,
        transformer_params=17_808, text_encoder_params=5_696, vae_params=21_819,
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


def _text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(
        vocab_size=vocab_size, d_model=_TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))


def _transformer(in_channels: int, out_channels: int):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=_HEADS, attention_head_dim=_HEAD_DIM, in_channels=in_channels,
        out_channels=out_channels, text_dim=_TEXT_DIM, freq_dim=32, ffn_dim=32, num_layers=1, image_dim=None,
        added_kv_proj_dim=None, rope_max_seq_len=64,
    )


def _vae(latent_channels: int, *, wan22: bool):
    """Wan 2.2's VAE (a 2×2 patchify of the RGB input, residual blocks: 16× space) or Wan 2.1's (8×), both 4× time,
    at 4 channels per level."""
    from diffusers import AutoencoderKLWan

    shape = dict(base_dim=4, z_dim=latent_channels, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                 temperal_downsample=[False, True, True], latents_mean=[0.0] * latent_channels,
                 latents_std=[1.0] * latent_channels)
    if wan22:
        shape.update(is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    return AutoencoderKLWan(**shape)


def _seeded(build):
    """``build()`` with the fixed build seed, the global RNG put back afterwards."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


def build_tiny_ti2v_components(*, vae_channels: int = 48, transformer_channels: int = 48) -> dict:
    """TI2V-5B's components in memory, deterministic weights. Other channel counts build a deliberately broken
    model (a 16-channel Wan 2.1 VAE beside the 48-channel transformer), for the load-time checks' tests."""
    from diffusers import UniPCMultistepScheduler

    tokenizer = build_tiny_tokenizer()
    parts = _seeded(lambda: {"text_encoder": _text_encoder(len(tokenizer)),
                             "vae": _vae(vae_channels, wan22=vae_channels == 48),
                             "transformer": _transformer(transformer_channels, transformer_channels)})
    return {"tokenizer": tokenizer, **parts, "scheduler": UniPCMultistepScheduler(**TI2V_5B_SCHEDULER_CONFIG)}


def build_tiny_ti2v_pipeline(**shape):
    """Saved as the hub saves TI2V-5B: ``WanPipeline`` with ``expand_timesteps`` (and no second expert)."""
    from diffusers import WanPipeline

    return WanPipeline(**build_tiny_ti2v_components(**shape), transformer_2=None, expand_timesteps=True)


def build_tiny_a14b_components(*, transformer_in_channels: int = 36) -> dict:
    """I2V-A14B's components: two experts with different weights. ``transformer_in_channels=16`` builds a
    text-to-video-shaped pair (the VAE's latents alone), for the refusal tests."""
    from diffusers import UniPCMultistepScheduler

    tokenizer = build_tiny_tokenizer()
    parts = _seeded(lambda: {"text_encoder": _text_encoder(len(tokenizer)), "vae": _vae(16, wan22=False),
                             "transformer": _transformer(transformer_in_channels, 16),
                             "transformer_2": _transformer(transformer_in_channels, 16)})
    return {"tokenizer": tokenizer, **parts, "scheduler": UniPCMultistepScheduler(**A14B_SCHEDULER_CONFIG)}


def build_tiny_a14b_pipeline(**shape):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline(**build_tiny_a14b_components(**shape), image_encoder=None, image_processor=None,
                                   boundary_ratio=A14B_BOUNDARY_RATIO)


class TinyWan22TI2VBackend(BuiltInModel, Wan22TI2VBackend):
    spec = TINY_TI2V_SPEC
    built_in_name = TINY_TI2V_NAME
    real_model = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    build_pipeline = staticmethod(build_tiny_ti2v_pipeline)


class TinyWan22A14BBackend(BuiltInModel, Wan22A14BBackend):
    spec = TINY_A14B_SPEC
    built_in_name = TINY_A14B_NAME
    real_model = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
    build_pipeline = staticmethod(build_tiny_a14b_pipeline)
