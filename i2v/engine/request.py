"""The typed request a caller builds, and its first validation (types and sanity ranges).

Model-specific checks (frame rule, size multiple, tiers) happen in ``resolve.py`` once the model's spec and the
image are known; both run before any model is loaded.
"""
from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from i2v.backends.gguf_file import check_transformer_file
from i2v.errors import BadInputError, shown
from i2v.guidance.framing import check_framing
from i2v.loras.choice import LoraChoice, check_choices

DEFAULT_MODEL = "ali-vilab/i2vgen-xl"
MAX_PROMPT_CHARS = 2000
MAX_CANDIDATES = 8
MAX_SEED = 2**32 - 1
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d{1,2})?)$")


def default_model() -> str:
    return os.environ.get("I2V_MODEL", DEFAULT_MODEL)


ImageSource = str | os.PathLike | bytes | Image.Image


@dataclass(frozen=True)
class GenerationRequest:
    """What to make. ``None`` means "take it from the preset" (or the model's default where no preset has it)."""

    image: ImageSource
    prompt: str
    negative_prompt: str = ""
    preset: str | None = None
    resolution: int | None = None  # a tier: about resolution² pixels at the image's aspect ratio
    width: int | None = None  # explicit size; both or neither, and not together with resolution
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    guidance: float | None = None
    fps: int | None = None
    seeds: tuple[int, ...] = ()  # one seed: candidates use seed, seed+1, …; several: one candidate each
    candidates: int = 1
    auto_enhance: bool = False
    model: str = field(default_factory=default_model)
    family: str | None = None  # a family id (backends.FAMILIES) for a hub id whose name and cache do not tell
    transformer_file: str | None = None  # a quantized transformer (.gguf path or hub owner/repo/file.gguf)
    dtype: str = "auto"
    device: str | None = None  # None: CUDA when present, else CPU
    output_path: Path | None = None  # explicit file for one video; several get _01, _02… suffixes
    last_image: ImageSource | None = None  # the video's last frame, for models that take one (spec.takes_last_image)
    # The sound track of a model that makes one (LTX-2). Accepted for every model: one without sound records
    # "audio": null, as it would with audio off, so a switch left on never fails a request.
    audio: bool = True
    # LoRAs applied to the denoiser, each with its strength (models with spec.takes_loras).
    loras: tuple[LoraChoice, ...] = ()
    # When the picture's aspect is not the video's (guidance/framing.py): "crop" fills the frame, keeping the part
    # at crop_focus (x, y: 0 = left/top edge, 1 = right/bottom, 0.5 = centre); "pad" keeps it whole on black bars.
    framing: str = "crop"
    crop_focus: tuple[float, float] = (0.5, 0.5)

    def with_changes(self, **changes: Any) -> "GenerationRequest":
        return replace(self, **changes)


def validate_request(request: GenerationRequest) -> None:
    """Raise ``BadInputError`` with a concise, actionable message for the first problem found."""
    _check_image_source(request.image)
    if request.last_image is not None:
        _check_image_source(request.last_image, "last image")
    _check_text("prompt", request.prompt, required=True)
    _check_text("negative prompt", request.negative_prompt, required=False)
    if request.preset is not None and not isinstance(request.preset, str):
        raise BadInputError("preset must be a preset name such as 'balanced'.")
    _check_int("resolution", request.resolution, 64, 2048)
    _check_int("width", request.width, 1, 100_000)
    _check_int("height", request.height, 1, 100_000)
    if (request.width is None) != (request.height is None):
        raise BadInputError("Give both width and height, or neither (and use resolution instead).")
    if request.width is not None and request.resolution is not None:
        raise BadInputError("Give either a resolution tier or an explicit width×height, not both.")
    _check_int("frames", request.frames, 1, 1000)
    _check_int("steps", request.steps, 1, 1000)
    _check_float("guidance", request.guidance, 0.0, 100.0)
    _check_int("fps", request.fps, 1, 240)
    _check_int("candidates", request.candidates, 1, MAX_CANDIDATES, required=True)
    if not isinstance(request.seeds, tuple):
        raise BadInputError("seeds must be a list of whole numbers.")
    for seed in request.seeds:
        _check_int("seed", seed, 0, MAX_SEED, required=True)
    if len(request.seeds) > 1 and request.candidates not in (1, len(request.seeds)):
        raise BadInputError(
            f"{len(request.seeds)} seeds were given with {request.candidates} candidates: give one seed per "
            "candidate, or one seed and let the candidates count up from it."
        )
    if len(request.seeds) > MAX_CANDIDATES:
        raise BadInputError(f"At most {MAX_CANDIDATES} seeds per request.")
    if not isinstance(request.auto_enhance, bool):
        raise BadInputError("auto_enhance must be true or false.")
    if request.family is not None and not isinstance(request.family, str):
        raise BadInputError("family must be a model family id such as 'wan2.1-i2v-480p'.")
    if not isinstance(request.audio, bool):
        raise BadInputError(f"audio must be true or false; got {request.audio!r}.")
    if not isinstance(request.model, str) or not request.model.strip():
        raise BadInputError("model must be a hub id (owner/name), a local folder, or 'tiny'.")
    if request.transformer_file is not None:
        check_transformer_file(request.transformer_file)
    if not isinstance(request.loras, tuple) or not all(isinstance(c, LoraChoice) for c in request.loras):
        raise BadInputError("loras must be a list of LoRAs, each a file with a strength.")
    check_choices(request.loras)
    check_framing(request.framing, request.crop_focus)
    if request.dtype not in DTYPE_CHOICES:
        raise BadInputError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}; got {shown(request.dtype)}.")
    if request.device is not None and not (isinstance(request.device, str) and DEVICE_PATTERN.match(request.device)):
        raise BadInputError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {shown(request.device)}.")
    if request.output_path is not None and Path(request.output_path).suffix.lower() != ".mp4":
        raise BadInputError(f"The output file must end in .mp4; got {str(request.output_path)!r}.")


def seeds_for(request: GenerationRequest, random_seed: int) -> tuple[int, ...]:
    """The seed of each candidate. ``random_seed`` is used when the request names none."""
    if len(request.seeds) > 1:
        return request.seeds
    base = request.seeds[0] if request.seeds else random_seed
    return tuple((base + i) % (MAX_SEED + 1) for i in range(request.candidates))


def _check_text(name: str, value: object, *, required: bool) -> None:
    if not isinstance(value, str):
        raise BadInputError(f"The {name} must be text.")
    if required and not value.strip():
        raise BadInputError(
            f"The {name} is empty: describe the subject and its motion, e.g. "
            "\"a sailboat drifting slowly to the left, waves rippling\"."
        )
    if len(value) > MAX_PROMPT_CHARS:
        raise BadInputError(
            f"The {name} is {len(value)} characters long; the limit is {MAX_PROMPT_CHARS} (and the text encoder "
            "reads only about 75 words): shorten it."
        )
    bad = [ch for ch in value if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"]
    if bad:
        raise BadInputError(
            f"The {name} contains a control character ({ascii(bad[0])}); remove it and try again."
        )
    # Lone surrogates are not text: they arrive from command-line bytes that are not UTF-8 (Python's
    # surrogateescape) or from a JSON \ud800-style escape, and crash the tokenizer and every UTF-8 writer later.
    broken = [ch for ch in value if unicodedata.category(ch) == "Cs"]
    if broken:
        raise BadInputError(
            f"The {name} contains bytes that are not valid UTF-8 text ({ascii(broken[0])}); "
            "retype it or save it as UTF-8 and try again."
        )


def _check_image_source(image: object, name: str = "image") -> None:
    if image is None or (isinstance(image, str) and not image.strip()):
        raise BadInputError(f"No {name} was given: choose the picture the video should start from.")
    if not isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        raise BadInputError(
            f"The {name} must be a file path, the file's bytes or a PIL image; got {type(image).__name__}."
        )


def _check_int(name: str, value: object, lowest: int, highest: int, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{name} must be a whole number; got {shown(value)}.")
    if not lowest <= value <= highest:
        raise BadInputError(f"{name} {shown(value)} is out of range: use {lowest}..{highest}.")


def _check_float(name: str, value: object, lowest: float, highest: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInputError(f"{name} must be a number; got {shown(value)}.")
    if not math.isfinite(value) or not lowest <= value <= highest:
        raise BadInputError(f"{name} {shown(value)} is out of range: use {lowest:g}..{highest:g}.")
