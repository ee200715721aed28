"""The pieces of LTX-2's two-stage path and of its distilled schedule that are not pipeline calls: the fixed sigma
schedules diffusers ships (``pipelines/ltx2/utils.py``), the arguments that turn every guidance pass off, the scheduler
that takes fixed sigmas as they are, the first stage's inputs, progress across both stages and each stage's record.

Sources: diffusers 0.42.1's LTX-2 docs ("Two-stages Generation": stage 2 re-noises the upsampled latents to
``STAGE_2_DISTILLED_SIGMA_VALUES[0]``, runs those 3 sigmas with guidance 1 on a copy of the scheduler without dynamic
shifting "to use Stage 2 distilled sigmas as is", and the distilled LoRA; "Distilled checkpoint generation": the 8
``DISTILLED_SIGMA_VALUES`` with guidance 1) and its DFR pipeline, which runs the distilled schedule with no negative
branch and spatio-temporal guidance 0 ("trained to be used without classifier-free guidance").
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from PIL import Image

from i2v.backends.base import DenoiseInputs, StepCallback
from i2v.backends.ltx2.spec import DISTILLED_SCHEDULE

# Every guidance pass off: the pipeline's defaults would still run classifier-free guidance for the sound
# (audio_guidance_scale 7 makes do_classifier_free_guidance true whatever the video's guidance), the spatio-temporal
# passes (stg_scale 1) and the modality-isolation passes (modality_scale 3). A distilled schedule runs one transformer
# call of batch 1 per step.
NO_GUIDANCE = dict(guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0,
                   modality_scale=1.0, audio_modality_scale=1.0)


def fixed_sigmas(name: str) -> list[float]:
    """The fixed schedule a tier names (``ModelSpec.fixed_schedules``), as diffusers ships it."""
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

    schedules = {DISTILLED_SCHEDULE: DISTILLED_SIGMA_VALUES}
    return list(schedules[name])


def refine_sigmas() -> list[float]:
    """The second stage's schedule: the distilled one's last three sigmas."""
    from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES

    return list(STAGE_2_DISTILLED_SIGMA_VALUES)


@contextlib.contextmanager
def unshifted_scheduler(pipe, active: bool = True) -> Iterator[None]:
    """``pipe``'s scheduler replaced, for one call, by a copy of its configuration without the resolution-dependent
    shift and without stretching to a terminal value, so fixed sigmas run as they are (diffusers' docs do this swap
    before the distilled stage 2). Put back afterwards."""
    if not active:
        yield
        return
    original = pipe.scheduler
    pipe.scheduler = type(original).from_config(original.config, use_dynamic_shifting=False, shift_terminal=None)
    try:
        yield
    finally:
        pipe.scheduler = original


def used_sigmas(scheduler) -> list[float]:
    """The sigmas the last call stepped through (the scheduler appends a terminal 0: left out)."""
    return [round(float(sigma), 6) for sigma in scheduler.sigmas[:-1]]


def first_stage_inputs(inputs: DenoiseInputs) -> DenoiseInputs:
    """The first stage: half the sides (multiples of 32, as the spec's two-stage sizes guarantee), the picture
    resized to them with LANCZOS as the engine fits pictures, the tier's steps and guidance."""
    width, height = inputs.width // 2, inputs.height // 2
    return replace(inputs, width=width, height=height, image=inputs.image.resize((width, height), Image.LANCZOS))


def offset_steps(on_step: StepCallback, offset: int, total: int) -> StepCallback:
    """Progress across both stages: a stage's step ``done`` is step ``offset + done`` of ``total``."""
    return lambda done, _steps, latents: on_step(offset + done, total, latents)


def stage_record(stage: str, inputs: DenoiseInputs, arguments: dict, sigmas: list[float] | None,
                 schedule: str | None) -> dict:
    """What a stage ran: its size, frames, steps and guidance, and its sigmas when they are a fixed schedule
    (otherwise the model's own, shifted by resolution)."""
    return {"stage": stage, "width": inputs.width, "height": inputs.height, "frames": inputs.frames,
            "steps": arguments["num_inference_steps"], "guidance": arguments["guidance_scale"],
            "schedule": schedule or "the model's own (shifted by resolution)",
            **({"sigmas": sigmas} if sigmas is not None else {})}
