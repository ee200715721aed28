"""What changes on the page with the chosen model: the banner, the presets' descriptions (a tier's numbers differ
per model) and the limits of the controls (CogVideoX takes 9, 17 … 49 frames at one size; I2VGen-XL any count
up to 64). Every update here carries limits and value together, so a slider never shows a value outside its
range while the two travel separately."""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from i2v.backends import backend_class_for
from i2v.backends.catalog import ModelOption
from i2v.engine.presets import Preset
from i2v.spec import ModelSpec


def banner_html(option: ModelOption, runs_on: str) -> str:
    name, spec = html.escape(option.name), option.spec
    if spec.random_weights:
        real = real_model_for(option.name)
        # The checkpoint of this model's own family: a tiny-wan user is after Wan, not I2V-XL.
        start = f"<code>--model {html.escape(real)}</code>" if real else "a real checkpoint of this family"
        return (f'<div class="banner banner-noise" data-model="{name}">Model: <strong>{name}</strong> — random '
                "weights, so every video is noise. It is here to try the app without a GPU or a download. Start "
                f"with {start} on a GPU for real videos. Running on {html.escape(runs_on)}.</div>")
    notes = "".join(f" {html.escape(note)}" for note in spec.notes)
    return (f'<div class="banner" data-model="{name}">Model: <strong>{name}</strong> ({html.escape(spec.family)}) '
            f"on {html.escape(runs_on)}.{notes}</div>")


def real_model_for(name: str) -> str | None:
    """The real checkpoint a built-in random-weight model stands for (its family's), or None."""
    return getattr(backend_class_for(name), "real_model", None)


def preset_choices(presets: dict[str, Preset]) -> list[tuple[str, str]]:
    """(label, name) for the preset radio; ``presets`` already hold the chosen model's values."""
    return [(f"{p.label} — {p.description}", p.name) for p in sorted(presets.values(), key=lambda p: p.order)]


def resolution_choices(spec: ModelSpec) -> list[tuple[str, int]]:
    if spec.fixed_size:
        width, height = spec.native_size
        return [(f"{tier}p ({width}×{height}, the model's only size)", tier) for tier in spec.resolution_tiers]
    return [(f"{tier}p", tier) for tier in spec.resolution_tiers]


def frames_info(spec: ModelSpec) -> str:
    if spec.frame_rule.step == 1:
        return f"any count from {spec.min_frames} to {spec.max_frames}"
    second = spec.min_frames + spec.frame_rule.step
    return f"{spec.frame_rule.describe()}: {spec.min_frames}, {second} … {spec.max_frames}"


def control_updates(spec: ModelSpec, values: tuple[int, int, int, float, int]) -> dict[str, Any]:
    """Resolution, frames, steps, guidance and fps for ``spec``, holding ``values``; keyed by ``FormValues``' names."""
    resolution, frames, steps, guidance, fps = values
    return {
        "resolution": gr.Dropdown(choices=resolution_choices(spec), value=resolution),
        "frames": gr.Slider(minimum=spec.min_frames, maximum=spec.max_frames, step=spec.frame_rule.step,
                            value=frames, info=f"Frame counts this model takes: {frames_info(spec)}"),
        "steps": gr.Slider(minimum=spec.steps_range[0], maximum=spec.steps_range[1], value=steps),
        "guidance": gr.Slider(minimum=spec.guidance_range[0], maximum=spec.guidance_range[1], value=guidance),
        "fps": gr.Slider(minimum=spec.fps_range[0], maximum=spec.fps_range[1], value=fps),
    }
