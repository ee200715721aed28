"""``tiny``: a random-weight I2VGen-XL at toy size (the real classes, a few thousand parameters), built offline.

It is built once into our cache folder with ``save_pretrained`` and then loaded through exactly the same folder
loader as the real model, so every run on ``tiny`` also exercises the real loading path. Its videos are noise.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

from i2v.backends.builtin import BuiltInModel, built_folder, byte_alphabet
from i2v.memory.unet import UNetMemoryProfile
from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC, I2VGenXLBackend

log = logging.getLogger(__name__)

TINY_NAME = "tiny"
TINY_BUILD_SEED = 0
_HIDDEN = 8  # text hidden size = image projection dim = UNet cross-attention dim

TINY_SPEC = dataclasses.replace(
    I2VGEN_XL_SPEC,
    family="I2VGen-XL (tiny, random weights)",
    min_side=64,
    resolution_tiers=(128, 256, 512, 768, 1024),
    random_weights=True,
    # Its own tier values (presets/tiers/*.toml, [models.tiny]): I2VGen-XL's 512p × 30-80 steps take minutes on a
    # CPU; at 128p each tier finishes in seconds, which is what a model for trying the app is for.
    preset_key="tiny",
    notes=("Random weights: the output is noise. For trying the app and for tests.",),
    memory=UNetMemoryProfile(unet_params=223_576, vae_params=24_759, text_encoder_params=5_944,
                         image_encoder_params=2_976, unet_base_width=8, vae_decoder_width=8),
)



def build_tiny_pipeline():
    """The tiny pipeline in memory, deterministic weights. Character-level tokenizer from a written vocabulary."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )
    import transformers

    alphabet = byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(scratch) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tokenizer = CLIPTokenizer(str(Path(scratch) / "vocab.json"), str(Path(scratch) / "merges.txt"),
                                  model_max_length=77)

    rng_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_BUILD_SEED)
    try:
        unet = I2VGenXLUNet(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
            norm_num_groups=4, cross_attention_dim=_HIDDEN, attention_head_dim=4,
        )
        vae = AutoencoderKL(
            block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
            norm_num_groups=4, layers_per_block=1, sample_size=64,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"], hidden_size=_HIDDEN, intermediate_size=16,
            num_attention_heads=2, num_hidden_layers=2, vocab_size=len(vocab), projection_dim=_HIDDEN,
            max_position_embeddings=77,
        ))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=8, projection_dim=_HIDDEN, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            intermediate_size=16, patch_size=8,
        ))
    finally:
        torch.random.set_rng_state(rng_state)
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    feature_extractor = processor_cls(crop_size=32, size=32)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return I2VGenXLPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
            feature_extractor=feature_extractor, unet=unet, scheduler=scheduler,
        )


def tiny_folder() -> Path:
    return built_folder(TINY_NAME, build_tiny_pipeline)


class TinyBackend(BuiltInModel, I2VGenXLBackend):
    spec = TINY_SPEC
    built_in_name = TINY_NAME
    real_model = "ali-vilab/i2vgen-xl"
    build_pipeline = staticmethod(build_tiny_pipeline)
