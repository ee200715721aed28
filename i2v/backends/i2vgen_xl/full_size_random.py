"""``i2vgen-xl-random``: I2VGen-XL at its real size (UNet 1.42 B parameters, 4.6 GiB of weights in half precision)
with random weights, built from the real configuration (``i2vgen_xl_config``) without any download.

For speed and memory figures on a GPU (``python -m i2v bench --model i2vgen-xl-random``): the work per step and
the memory are those of the real model; the pictures are noise. Like ``tiny`` it is saved once with
``save_pretrained`` (in float16, about 4.6 GB in the cache folder) and loaded back through the real folder loader.
Building it needs about 10 GB of RAM and a minute or two; it is never offered on the page.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC, I2VGenXLBackend
from i2v.backends.builtin import BuiltInModel, built_folder
from i2v.backends.i2vgen_xl.tiny import build_tiny_pipeline

log = logging.getLogger(__name__)

FULL_SIZE_RANDOM_NAME = "i2vgen-xl-random"
BUILD_SEED = 0

FULL_SIZE_RANDOM_SPEC = dataclasses.replace(
    I2VGEN_XL_SPEC,
    family="I2VGen-XL (full size, random weights)",
    random_weights=True,
    notes=("Random weights at the real size: for speed and memory measurements; the output is noise.",),
)



def build_full_size_pipeline():
    """The real architecture with seeded random weights, in float16 (what is saved). The tokenizer, image
    processor and scheduler come from ``tiny``: they have no weights, and the character-level tokenizer's ids
    are valid for the real text encoder's vocabulary."""
    import warnings

    import torch
    import transformers
    from diffusers import I2VGenXLPipeline

    from i2v.backends.i2vgen_xl.config import build_full_size_components

    small = build_tiny_pipeline()
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(BUILD_SEED)
    try:
        # Built in float32 on the CPU (initialisers are not all defined for half precision there), then halved.
        components = build_full_size_components(dtype=torch.float16, device="cpu")
    finally:
        torch.random.set_rng_state(rng_state)
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return I2VGenXLPipeline(
            vae=components["vae"], text_encoder=components["text_encoder"], tokenizer=small.tokenizer,
            image_encoder=components["image_encoder"], feature_extractor=processor_cls(crop_size=224, size=224),
            unet=components["unet"], scheduler=small.scheduler,
        )


def full_size_random_folder() -> Path:
    return built_folder(FULL_SIZE_RANDOM_NAME, build_full_size_pipeline)


class FullSizeRandomBackend(BuiltInModel, I2VGenXLBackend):
    spec = FULL_SIZE_RANDOM_SPEC
    built_in_name = FULL_SIZE_RANDOM_NAME
    real_model = "ali-vilab/i2vgen-xl"
    made_for = "made to measure speed and memory"
    build_pipeline = staticmethod(build_full_size_pipeline)
