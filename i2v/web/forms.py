"""Widget values ↔ engine requests. The page's controls send plain numbers and strings; this is the one place
that turns them into a ``GenerationRequest`` (refusing what is not a number with a message) and back. The image
input that hands uploads to the engine untouched (``uploaded_image``) is built here too."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from i2v.errors import BadInputError, shown
from i2v.engine.presets import Preset
from i2v.engine.request import GenerationRequest
from i2v.loras.choice import MAX_LORAS, LoraChoice, lora_choices, parse_lora

RANDOM_SEED = -1


def uploaded_image(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose handlers get the uploaded file exactly as it was sent (a path in Gradio's upload folder).

    A plain ``gr.Image`` opens every upload with Pillow before the handler runs and converts it to RGB. So an empty
    file, a text file named ``.png`` or a decompression bomb fails inside Gradio ("Could not preprocess input
    component", with a server path) instead of getting our message; a 12 KB PNG declaring 10 000×10 000 px is
    decoded and re-encoded (about 3 s and 600 MB per request); 16-bit grey turns white and transparent areas keep
    their hidden colour instead of white. ``load_image`` does all of that safely, so it must see the original file.

    Built as a ``gr.Image`` with its ``preprocess`` replaced rather than as a subclass: Gradio writes a ``.pyi`` stub
    beside the module of every component subclass when it is imported (and fails where that folder is read-only).
    Send it values only: an update of its other properties makes Gradio rebuild it as a plain ``gr.Image``.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    image.preprocess = _uploaded_path  # Gradio calls block.preprocess(payload) on the instance
    return image


def _uploaded_path(payload: Any) -> str | None:
    if payload is None:
        return None
    if not payload.path:  # an inline data: URL instead of an upload; gr.Image would decode it with Pillow
        raise gr.Error("Send the image as an uploaded file (handle_file(path) in gradio_client).",
                       print_exception=False)
    return str(payload.path)


@dataclass(frozen=True)
class FormValues:
    """The settings controls. ``Page`` names its controls after these fields and ``Page.controls()`` lists them in
    this order, so a handler of the form reads ``FormValues(*values)``."""

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
    model: Any = None  # empty: the app's configured model
    last_image: Any = None  # the video's last frame, for models that take one (hidden on the page elsewhere)
    audio: Any = True  # the sound track of a model that makes one (the box is shown for those models only)
    # The page: the names chosen in the LoRA menu, and one strength slider per chosen name (in the menu's order).
    # The API: any value ``lora_choices`` reads, and no strengths (they travel inside that value).
    loras: Any = None
    lora_strength_1: Any = None
    lora_strength_2: Any = None
    lora_strength_3: Any = None
    lora_strength_4: Any = None
    # How the picture meets the video's aspect: "crop" (at crop_x, crop_y: 0…1, 0.5 = centre) or "pad".
    framing: Any = "crop"
    crop_x: Any = 0.5
    crop_y: Any = 0.5

    def lora_strengths(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f"lora_strength_{slot}") for slot in range(1, MAX_LORAS + 1))


def whole(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None or value == "":
        if allow_none:
            return None
        raise BadInputError(f"{name} is empty: enter a whole number.")
    if isinstance(value, bool):
        raise BadInputError(f"{name} must be a whole number; got {shown(value)}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a whole number; got {shown(value)}.") from None
    if not math.isfinite(number) or number != int(number):
        raise BadInputError(f"{name} must be a whole number; got {shown(value)}.")
    return int(number)


def decimal(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None or value == "":
        if allow_none:
            return None
        raise BadInputError(f"{name} is empty: enter a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{name} must be a number; got {shown(value)}.") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise BadInputError(f"{name} must be a finite number; got {shown(value)}.")
    return number


def switch(name: str, value: Any) -> bool:
    """True or false, nothing else: ``bool("false")`` is True, so a script's "false", "0" or "no" switched the
    option on."""
    if not isinstance(value, bool):
        raise BadInputError(f"{name} must be true or false; got {shown(value)}.")
    return value


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
        auto_enhance=switch("auto_enhance", form.auto_enhance),
        model=model,
        last_image=form.last_image or None,
        audio=True if form.audio is None else form.audio,  # a non-bool is refused by validate_request
        loras=form_loras(form),
        framing=form.framing or "crop",  # an unknown name is refused by validate_request
        crop_focus=tuple(0.5 if value is None else value  # empty: the centre, the engine's default
                         for value in (decimal("crop_x", form.crop_x, allow_none=True),
                                       decimal("crop_y", form.crop_y, allow_none=True))),
    )


def form_loras(form: FormValues) -> tuple[LoraChoice, ...]:
    """The page pairs each chosen name with its slider's strength; an API caller sends names and strengths in one
    value (``lora_choices``: objects, pairs or ``PATH[:STRENGTH]`` strings)."""
    strengths = form.lora_strengths()
    if all(strength is None for strength in strengths):
        return lora_choices(form.loras)
    names = [form.loras] if isinstance(form.loras, str) else list(form.loras or [])
    # A menu name may carry an expert (``file@high``; its strength is on the slider): parsed as the CLI does.
    paired = [replace(parse_lora(name), strength=decimal(f"the strength of LoRA {shown(name)}", strength))
              for name, strength in zip(names, strengths)]
    # More names than sliders cannot come from the page (the menu stops at MAX_LORAS); lora_choices refuses them.
    return lora_choices(paired + names[len(strengths):])


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


def preset_differences(request: GenerationRequest, preset: Preset | None) -> list[str]:
    """The numbers the user set apart from the chosen preset, e.g. ``["steps 3 (Fast check: 30)"]``: the page marks
    such settings as custom, since the preset's name alone would describe another run."""
    if preset is None:
        return []
    asked = {"resolution": request.resolution, "frames": request.frames, "steps": request.steps,
             "guidance": request.guidance, "fps": request.fps}
    tier = dict(zip(asked, preset_values(preset)))
    return [f"{name} {asked[name]:g} ({preset.label}: {tier[name]:g})" for name in asked
            if asked[name] is not None and float(asked[name]) != float(tier[name])]
