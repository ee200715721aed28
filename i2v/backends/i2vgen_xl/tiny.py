"""``tiny``: a random-weight I2VGen-XL at toy size (the real classes, a few thousand parameters), built offline.

It is built once into our cache folder with ``save_pretrained`` and then loaded through exactly the same folder
loader as the real model, so every run on ``tiny`` also exercises the real loading path. Its videos are noise.
"""
from __future__ import annotations

import contextlib

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from i2v.findings import Finding
from i2v.paths import cache_dir
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
    notes=("Random weights: the output is noise. For trying the app and for tests.",),
    memory=UNetMemoryProfile(unet_params=223_576, vae_params=24_759, text_encoder_params=5_944,
                         image_encoder_params=2_976, unet_base_width=8, vae_decoder_width=8),
)

RANDOM_WEIGHTS_WARNING = Finding(
    "model.random_weights",
    "The 'tiny' model has random weights: its videos are noise, made to test the app, not to look at.",
    "Use --model ali-vilab/i2vgen-xl (or a local folder) for real videos.",
)


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte-level alphabet (the 256 printable stand-ins for bytes), so any text tokenizes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


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

    alphabet = _bytes_to_unicode()
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


def build_key() -> str:
    """Saved layouts differ across library versions (transformers ≥ 5.6 renamed text-encoder keys)."""
    import diffusers
    import transformers

    return f"v1-diffusers{diffusers.__version__}-transformers{transformers.__version__}"


@contextlib.contextmanager
def _no_progress_bars():
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def built_folder(name: str, build) -> Path:
    """The saved built-in model ``name``, made by ``build()`` (a pipeline) on first use. Written to a temporary
    folder and renamed, so a crash or a concurrent builder never leaves a half-written model behind."""
    folder = cache_dir() / f"{name}-{build_key()}"
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=folder.parent))
    try:
        pipeline = build()
        with _no_progress_bars():  # transformers' "Writing model shards" bar would land in the CLI's output
            pipeline.save_pretrained(scratch)
        try:
            os.rename(scratch, folder)
        except OSError:
            if not (folder / "model_index.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    log.info("built the %s model in %s", name, folder)
    return folder


def tiny_folder() -> Path:
    return built_folder(TINY_NAME, build_tiny_pipeline)


class TinyBackend(I2VGenXLBackend):
    spec = TINY_SPEC

    def __init__(self) -> None:
        super().__init__(TINY_NAME)

    def _resolve_folder(self) -> tuple[Path, str, str | None]:
        return tiny_folder(), "built-in", f"tiny-{build_key()}"

    def _extra_warnings(self) -> tuple[Finding, ...]:
        return (RANDOM_WEIGHTS_WARNING,)

    def count_tokens(self, text: str) -> int | None:
        # The toy tokenizer is character-level: its counts say nothing about the real model's 77-token limit.
        return None
