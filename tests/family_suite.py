"""What each model family supplies to the shared behaviour suite (``test_family_behaviour.py``), in the spirit of
diffusers' ``PipelineTesterMixin``: the suite is written once, and a family only describes its tiny model, its frame
rule, how to build a copy whose channels do not fit, and which module to poison for the NaN test. A family's own file
(``test_wan.py``…) keeps only the rules no other family has."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from i2v.backends.cogvideox import tiny as cogvideox_tiny
from i2v.backends.cogvideox.backend import CogVideoXBackend
from i2v.backends.easyanimate import tiny as easyanimate_tiny
from i2v.backends.easyanimate.backend import EasyAnimateBackend
from i2v.backends.i2vgen_xl import tiny as i2vgen_xl_tiny
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.backends.wan import tiny as wan_tiny
from i2v.backends.wan.backend import WanBackend
from i2v.spec import ModelSpec


@dataclass(frozen=True)
class FamilyCase:
    """One family as the shared suite sees it, through its built-in tiny model."""

    id: str  # the pytest id
    model: str  # the built-in tiny model's name
    spec: ModelSpec  # the tiny build's; a folder on disk would get the real model's spec
    folder_backend: type  # the backend a folder of this family is routed to by its model_index.json
    saved_folder: Callable[[], Path]  # the tiny model as save_pretrained wrote it (built once into the cache)
    build_pipeline: Callable  # the same build in memory, to compare loaded weights with
    components: dict[str, str]  # component classes the load report and every record must name
    denoiser: str  # the component that denoises: its weights file is damaged in the key-findings test
    # Frames: asked for -> made, and the rule the notice names (None: any count, nothing is snapped).
    asked_frames: int
    made_frames: int
    frame_rule: str | None
    size: tuple[int, int]  # the video's width × height for the request below (the tier's size at 320×256)
    fps: int  # the tiny preset's
    write_mismatched_channels: Callable[[Path], None]  # saves a model whose VAE and denoiser channels disagree
    channel_error: str  # the load error for it, naming both channel counts (a regex)
    nan_module: Callable  # pipeline -> the module whose output is NaN in bf16 (the overflow)
    nan_calls_per_step: int  # calls of that module in one denoising step (2 where guidance is two passes)
    request_fields: dict = field(default_factory=dict)  # where the default tier would be slow on a CPU
    # Test name -> the open bug it shows in this family: the test runs as a strict expected failure (it must fail
    # with an AssertionError; once the bug is fixed it passes, strict makes that an error, and the entry goes).
    known_bugs: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.id


def _with_a_16_channel_vae(target: Path) -> None:
    """The tiny I2VGen-XL with its VAE swapped for one with 16 latent channels (its UNet takes 4)."""
    from diffusers import AutoencoderKL

    source = i2vgen_xl_tiny.tiny_folder()
    shutil.copytree(source, target)
    shutil.rmtree(target / "vae")
    config = json.loads((source / "vae" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config["latent_channels"] = 16
    AutoencoderKL(**config).save_pretrained(target / "vae")


def _saving(build, **broken) -> Callable[[Path], None]:
    return lambda target: build(**broken).save_pretrained(target)


I2VGEN_XL = FamilyCase(
    id="i2vgen-xl",
    model=i2vgen_xl_tiny.TINY_NAME,
    spec=i2vgen_xl_tiny.TINY_SPEC,
    folder_backend=I2VGenXLBackend,
    saved_folder=i2vgen_xl_tiny.tiny_folder,
    build_pipeline=i2vgen_xl_tiny.build_tiny_pipeline,
    components={"unet": "I2VGenXLUNet", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel",
                "image_encoder": "CLIPVisionModelWithProjection", "scheduler": "DDIMScheduler"},
    denoiser="unet",
    asked_frames=10, made_frames=10, frame_rule=None,
    size=(64, 64), fps=8,
    request_fields=dict(width=64, height=64),  # the default tier (576×448 here) takes seconds per step
    write_mismatched_channels=_with_a_16_channel_vae,
    channel_error=r"VAE latent channels is 16 but UNet input channels is 4",
    nan_module=lambda pipe: pipe.unet,
    nan_calls_per_step=1,
)

COGVIDEOX = FamilyCase(
    id="cogvideox",
    model=cogvideox_tiny.TINY_COGVIDEOX_NAME,
    spec=cogvideox_tiny.TINY_COGVIDEOX_SPEC,
    folder_backend=CogVideoXBackend,
    saved_folder=cogvideox_tiny.tiny_cogvideox_folder,
    build_pipeline=cogvideox_tiny.build_tiny_pipeline,
    components={"transformer": "CogVideoXTransformer3DModel", "vae": "AutoencoderKLCogVideoX",
                "text_encoder": "T5EncoderModel", "scheduler": "CogVideoXDDIMScheduler"},
    denoiser="transformer",
    asked_frames=10, made_frames=9, frame_rule="8N+1",
    size=(96, 64), fps=8,  # its one size, whatever the picture
    write_mismatched_channels=_saving(cogvideox_tiny.build_tiny_pipeline, transformer_in_channels=6),
    channel_error=r"VAE has 4 latent channels.*2 × 4 = 8 input channels.*takes 6",
    nan_module=lambda pipe: pipe.transformer,
    nan_calls_per_step=1,
)

WAN = FamilyCase(
    id="wan",
    model=wan_tiny.TINY_WAN_NAME,
    spec=wan_tiny.TINY_WAN_SPEC,
    folder_backend=WanBackend,
    saved_folder=wan_tiny.tiny_wan_folder,
    build_pipeline=wan_tiny.build_tiny_pipeline,
    components={"transformer": "WanTransformer3DModel", "vae": "AutoencoderKLWan", "text_encoder": "UMT5EncoderModel",
                "image_encoder": "CLIPVisionModel", "scheduler": "UniPCMultistepScheduler"},
    denoiser="transformer",
    asked_frames=10, made_frames=9, frame_rule="4N+1",
    size=(96, 80), fps=16,  # the "64p" tier's area (112×64) at the picture's 1.25:1
    write_mismatched_channels=_saving(wan_tiny.build_tiny_pipeline, transformer_in_channels=32),
    channel_error=r"VAE has 16 latent channels.*2 × 16 \+ 4 = 36 input channels.*but it takes 32",
    # The output projection: the transformer's first parameter is one it keeps in float32, and nan_output decides
    # by the first parameter's dtype whether the module runs in bf16.
    nan_module=lambda pipe: pipe.transformer.proj_out,
    nan_calls_per_step=2,  # with and without the prompt, in two passes
)

EASYANIMATE = FamilyCase(
    id="easyanimate",
    model=easyanimate_tiny.TINY_EASYANIMATE_NAME,
    spec=easyanimate_tiny.TINY_EASYANIMATE_SPEC,
    folder_backend=EasyAnimateBackend,
    saved_folder=easyanimate_tiny.tiny_easyanimate_folder,
    build_pipeline=easyanimate_tiny.build_tiny_pipeline,
    components={"transformer": "EasyAnimateTransformer3DModel", "vae": "AutoencoderKLMagvit",
                "text_encoder": "Qwen2VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
                "scheduler": "FlowMatchEulerDiscreteScheduler"},
    denoiser="transformer",
    asked_frames=10, made_frames=9, frame_rule="4N+1",
    size=(64, 64), fps=8,  # the "64p" tier's area at 1.25:1, sides in multiples of 16
    write_mismatched_channels=_saving(easyanimate_tiny.build_tiny_pipeline, transformer_in_channels=8),
    channel_error=(r"VAE has 4 latent channels, so the transformer must take 4 \(noise latents\) \+ 1 \(mask\) \+ "
                   r"4 \(masked-video latents\) = 9 input channels, but it takes 8"),
    nan_module=lambda pipe: pipe.transformer,
    nan_calls_per_step=1,
)

FAMILIES = (I2VGEN_XL, COGVIDEOX, WAN, EASYANIMATE)
