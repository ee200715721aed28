"""Widget values ↔ engine requests. The page's controls send plain numbers and strings; this is the one place
that turns them into a ``GenerationRequest`` (refusing what is not a number with a message) and back."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import BadInputError
from ..presets import Preset
from ..request import GenerationRequest

RANDOM_SEED = -1


@dataclass(frozen=True)
class FormValues:
    """The controls in page order (the order of ``Studio.settings_inputs``)."""

    image: Any
    prompt: str
    negative_prompt: str
    preset: str
    resolution: Any
    frames: Any
    steps: Any
    guidance: Any
    fps: Any
    seed: Any
    candidates: Any
    auto_enhance: Any


def whole(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None or value == "":
        if allow_none:
            return None
        raise BadInputError(f"{name} is empty: enter a whole number.")
    if isinstance(value, bool):
        raise BadInputError(f"{name} must be a whole number; got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a whole number; got {value!r}.") from None
    if not math.isfinite(number) or number != int(number):
        raise BadInputError(f"{name} must be a whole number; got {value!r}.")
    return int(number)


def decimal(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None or value == "":
        if allow_none:
            return None
        raise BadInputError(f"{name} is empty: enter a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a number; got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise BadInputError(f"{name} must be a finite number; got {value!r}.")
    return number


def to_request(form: FormValues, model: str, *, allow_missing: bool = False) -> GenerationRequest:
    """The request the controls describe. ``allow_missing``: empty numbers mean "take it from the preset"
    (the API's defaults); the page always sends every number."""
    if form.image is None:
        raise BadInputError("Upload an image first: the video starts from it.")
    seed = whole("seed", form.seed, allow_none=True)
    return GenerationRequest(
        image=form.image,
        prompt=form.prompt or "",
        negative_prompt=form.negative_prompt or "",
        preset=form.preset or None,
        resolution=whole("resolution", form.resolution, allow_none=allow_missing),
        frames=whole("frames", form.frames, allow_none=allow_missing),
        steps=whole("steps", form.steps, allow_none=allow_missing),
        guidance=decimal("guidance", form.guidance, allow_none=allow_missing),
        fps=whole("fps", form.fps, allow_none=allow_missing),
        seeds=() if seed is None or seed == RANDOM_SEED else (seed,),
        candidates=whole("candidates", form.candidates, allow_none=False),
        auto_enhance=bool(form.auto_enhance),
        model=model,
    )


def preset_values(preset: Preset) -> tuple[int, int, int, float, int]:
    """resolution, frames, steps, guidance, fps: what choosing the preset puts in the controls."""
    return preset.resolution, preset.frames, preset.steps, preset.guidance, preset.fps


def next_tier(presets: dict[str, Preset], name: str | None) -> Preset | None:
    """The preset above ``name`` (by order), or None at the top."""
    ordered = sorted(presets.values(), key=lambda p: p.order)
    names = [p.name for p in ordered]
    if name not in names:
        return None
    index = names.index(name)
    return ordered[index + 1] if index + 1 < len(ordered) else None
