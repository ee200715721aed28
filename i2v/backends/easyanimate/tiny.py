"""``tiny-easyanimate``: a random-weight EasyAnimate V5.1 image-to-video pipeline at toy size (the real classes,
Qwen2-VL text encoder included, ~150 k parameters), built offline.

Like ``tiny``, it is built once into our cache folder with ``save_pretrained`` and then loaded through exactly the
same folder loader as the real model, so every run on it exercises the real loading path. It keeps the real model's
shape rules: 4N+1 frames (a 4-block Magvit VAE: 8× spatial, 4× temporal), free sizes in multiples of 16, and a
transformer that reads latents + 1 mask channel + masked-video latents. Its videos are noise.
"""
from __future__ import annotations

import dataclasses
import logging
import string
from pathlib import Path

from i2v.backends.builtin import BuiltInModel, built_folder, byte_alphabet
from i2v.backends.easyanimate.backend import EASYANIMATE_SPEC, SCHEDULER_CONFIG, EasyAnimateBackend, inpaint_in_channels

log = logging.getLogger(__name__)

TINY_EASYANIMATE_NAME = "tiny-easyanimate"
TINY_BUILD_SEED = 0
TINY_LATENT_CHANNELS = 4
_TEXT_DIM = 16  # text encoder hidden size = transformer text_embed_dim (3584 in the real model)
# The pipeline pads every prompt to 256 tokens (encode_prompt's max_sequence_length); positions must cover them.
_TEXT_POSITIONS = 512
# Qwen2-VL's chat markers: the pipeline wraps each prompt in the tokenizer's chat template.
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_PLAIN_CHAT_TEMPLATE = "{% for message in messages %}{% for part in message['content'] %}{{ part['text'] }}" \
                       "{% endfor %}{% endfor %}"

TINY_EASYANIMATE_SPEC = dataclasses.replace(
    EASYANIMATE_SPEC,
    family="EasyAnimate V5.1 InP (tiny, random weights)",
    latent_channels=TINY_LATENT_CHANNELS,
    min_side=32,
    max_side=256,
    resolution_tiers=(64, 96),
    native_size=(96, 64),
    preset_key="tiny-easyanimate",  # toy sizes, so a CPU runs every preset in seconds
    random_weights=True,
    notes=("Random weights: the output is noise. For trying the app and for tests.",),
    # The real model's VRAM model at this build's widths and parameter counts (a test keeps them equal), so the
    # memory planner runs for it on a (fake) GPU: its predictions are the CUDA context and little else.
    memory=EASYANIMATE_SPEC.memory.scaled(transformer_width=32 / 3072, vae_width=8 / 128, text_width=_TEXT_DIM / 3584,
                                          transformer_params=48_400, text_encoder_params=39_312, vae_params=63_511),
)



def build_qwen2_tokenizer():
    """A byte-level Qwen2 tokenizer with no merges (one token per byte) from a written vocabulary, with Qwen's
    chat markers and a chat template: no download."""
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(byte_alphabet())}
    for token in _SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(_SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def build_bert_tokenizer():
    """A character-level BertTokenizer from a written vocabulary (the pipeline's other accepted text encoder).
    Given as a dict: transformers 5 deprecates building WordPiece from a vocab.txt path."""
    from transformers import BertTokenizer

    chars = [c for c in string.printable if not c.isspace()]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=False)
    tokenizer.chat_template = _PLAIN_CHAT_TEMPLATE
    return tokenizer


def _text_encoder(kind: str, vocab_size: int):
    if kind == "bert":
        from transformers import BertConfig, BertModel

        return BertModel(BertConfig(
            vocab_size=vocab_size, hidden_size=_TEXT_DIM, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=_TEXT_POSITIONS,
        ))
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration(Qwen2VLConfig(
        # Two layers: the pipeline reads hidden_states[-2], the second-to-last layer, as the real model does.
        text_config=dict(vocab_size=vocab_size, hidden_size=_TEXT_DIM, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=_TEXT_POSITIONS,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=_TEXT_DIM, num_heads=2, mlp_ratio=2),
    ))


def build_tiny_components(*, latent_channels: int = TINY_LATENT_CHANNELS, transformer_in_channels: int | None = None,
                          text_encoder: str = "qwen2-vl") -> dict:
    """The components in memory, deterministic weights. ``transformer_in_channels`` other than the inpaint layout
    (latents + 1 mask channel + masked-video latents) builds a deliberately broken model (for the load-time check's
    test); ``text_encoder="bert"`` the pipeline's other accepted text encoder."""
    import torch
    from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = build_bert_tokenizer() if text_encoder == "bert" else build_qwen2_tokenizer()
    width, height = TINY_EASYANIMATE_SPEC.native_size
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        encoder = _text_encoder(text_encoder, len(tokenizer))
        vae = AutoencoderKLMagvit(  # four blocks as the real one: 8× spatial, 4× temporal
            in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 8, 8, 8),
            down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
            up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
            layers_per_block=1, norm_num_groups=2, spatial_group_norm=True,
        )
        transformer = EasyAnimateTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16,  # the 3D rotary embedding splits 16 into 4 + 6 + 6
            in_channels=transformer_in_channels or inpaint_in_channels(latent_channels, True),
            out_channels=latent_channels, patch_size=2, sample_width=width // 8, sample_height=height // 8,
            num_layers=2, mmdit_layers=1, time_embed_dim=8, text_embed_dim=_TEXT_DIM, add_norm_text_encoder=True,
            resize_inpaint_mask_directly=True, enable_text_attention_mask=True, add_noise_in_inpaint_model=True,
        )
    finally:
        torch.random.set_rng_state(rng_state)
    return {"tokenizer": tokenizer, "text_encoder": encoder, "vae": vae, "transformer": transformer,
            "scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)}


def build_tiny_pipeline(**variant):
    from diffusers import EasyAnimateInpaintPipeline

    return EasyAnimateInpaintPipeline(**build_tiny_components(**variant))


def tiny_easyanimate_folder() -> Path:
    return built_folder(TINY_EASYANIMATE_NAME, build_tiny_pipeline)


class TinyEasyAnimateBackend(BuiltInModel, EasyAnimateBackend):
    spec = TINY_EASYANIMATE_SPEC
    built_in_name = TINY_EASYANIMATE_NAME
    real_model = "alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers"
    build_pipeline = staticmethod(build_tiny_pipeline)
