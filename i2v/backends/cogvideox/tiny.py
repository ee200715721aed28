"""``tiny-cogvideox``: a random-weight CogVideoX image-to-video pipeline at toy size (the real classes, ~90 k
parameters), built offline.

Like ``tiny``, it is built once into our cache folder with ``save_pretrained`` and then loaded through exactly the
same folder loader as the real model, so every run on it exercises the real loading path. It keeps the real
model's shape rules: 8N+1 frames, one fixed size (96×64 here, the real model's 3:2), learned positional
embeddings, and a transformer that takes twice the VAE's latent channels. Its videos are noise.
"""
from __future__ import annotations

import dataclasses
import logging
import string
from pathlib import Path

from i2v.backends.builtin import BuiltInModel, built_folder
from i2v.backends.cogvideox.backend import COGVIDEOX_SPEC, CogVideoXBackend

log = logging.getLogger(__name__)

TINY_COGVIDEOX_NAME = "tiny-cogvideox"
TINY_BUILD_SEED = 0
TINY_SIZE = (96, 64)  # width × height: 12×8 latents, 6×4 patches
TINY_LATENT_CHANNELS = 4
_TEXT_DIM = 16  # T5 d_model = transformer text_embed_dim
_TEXT_TOKENS = 64  # the transformer's text positions (226 in the real model); characters here

TINY_COGVIDEOX_SPEC = dataclasses.replace(
    COGVIDEOX_SPEC,
    family="CogVideoX-I2V (tiny, random weights)",
    latent_channels=TINY_LATENT_CHANNELS,
    resolution_tiers=(64,),  # named by the short side, as "480p" for the real 720×480
    native_size=TINY_SIZE,
    random_weights=True,
    preset_key="tiny-cogvideox",  # toy lengths and steps, so every tier runs on a CPU in seconds
    notes=("Random weights: the output is noise. For trying the app and for tests.",),
    # The real model's VRAM model at this build's widths and parameter counts (a test keeps them equal), so the
    # memory planner runs for it on a (fake) GPU: its predictions are the CUDA context and little else.
    memory=COGVIDEOX_SPEC.memory.scaled(transformer_width=32 / 3072, vae_width=8 / 128, text_width=_TEXT_DIM / 4096,
                                        transformer_params=16_440, text_encoder_params=5_184, vae_params=65_195),
)



def build_tiny_tokenizer():
    """A character-level T5 (Unigram) tokenizer from a written vocabulary: no download, no SentencePiece file."""
    from transformers import T5Tokenizer

    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -1.0) for c in chars] + [("\u2581" + c, -1.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_components(*, latent_channels: int = TINY_LATENT_CHANNELS,
                          transformer_in_channels: int | None = None) -> dict:
    """The components in memory, deterministic weights. ``transformer_in_channels`` other than twice the latent
    channels builds a deliberately broken model (for the load-time check's test)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tiny_tokenizer()
    width, height = TINY_SIZE
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=_TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8, relative_attention_max_distance=16,
        ))
        vae = AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
            latent_channels=latent_channels, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
        )
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16,  # rotary embedding splits 16 into 4 + 6 + 6
            in_channels=transformer_in_channels or 2 * latent_channels, out_channels=latent_channels,
            time_embed_dim=2, text_embed_dim=_TEXT_DIM, num_layers=1, sample_width=width // 8,
            sample_height=height // 8, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
            max_text_seq_length=_TEXT_TOKENS, use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,  # as CogVideoX-5b-I2V: one fixed size
        )
    finally:
        torch.random.set_rng_state(rng_state)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "transformer": transformer,
            "scheduler": CogVideoXDDIMScheduler()}


def build_tiny_pipeline(**broken):
    from diffusers import CogVideoXImageToVideoPipeline

    return CogVideoXImageToVideoPipeline(**build_tiny_components(**broken))


def tiny_cogvideox_folder() -> Path:
    return built_folder(TINY_COGVIDEOX_NAME, build_tiny_pipeline)


class TinyCogVideoXBackend(BuiltInModel, CogVideoXBackend):
    spec = TINY_COGVIDEOX_SPEC
    built_in_name = TINY_COGVIDEOX_NAME
    real_model = "THUDM/CogVideoX-5b-I2V"
    build_pipeline = staticmethod(build_tiny_pipeline)
