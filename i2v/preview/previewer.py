"""When a step makes a preview, and the rule that a preview never fails a job.

``preview_map`` is asked once per job, right after the model is loaded (None: no previews); ``StepPreviewer.for_run``
makes one denoising run's previewer, whose ``after_step`` the step callback calls: it returns the step's ``Preview``
or None. Any failure in here is logged with the job id and turns previews off for the
rest of the job: the video matters, its preview does not.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from i2v.engine.progress import Preview
from i2v.preview.latent_map import LatentRgbMap
from i2v.preview.render import MEDIA_TYPE, render_webp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewSettings:
    enabled: bool = True
    every_steps: int = 5  # a preview when this many steps passed since the last one…
    every_seconds: float = 5.0  # …or this much time: slow runs (seconds per step) still show something often
    longest_side: int = 256  # pixels; small enough to poll, large enough to judge motion and composition


class PreviewSchedule:
    """Step 1 always (so a slow run shows something early), then every ``every_steps`` steps or ``every_seconds``,
    whichever comes first."""

    def __init__(self, settings: PreviewSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.last_step: int | None = None
        self.last_time = 0.0

    def due(self, done: int) -> bool:
        if self.last_step is None:
            return True
        return (done - self.last_step >= self.settings.every_steps
                or self.clock() - self.last_time >= self.settings.every_seconds)

    def made(self, done: int) -> None:
        self.last_step, self.last_time = done, self.clock()


class StepPreviewer:
    """One candidate's previews. ``to_layout`` is the backend's ``preview_latents`` for this run's inputs: a
    step's latents → (channels, frames, h, w) in the denoiser's normalisation."""

    def __init__(self, latent_map: LatentRgbMap, to_layout: Callable, *, job_id: str, candidate: int, inputs,
                 settings: PreviewSettings):
        self.map = latent_map
        self.to_layout = to_layout
        self.job_id = job_id
        self.candidate = candidate
        self.inputs = inputs  # the run's DenoiseInputs: size, frames and fps of the video being made
        self.settings = settings
        self.schedule = PreviewSchedule(settings)
        self.disabled = False
        self.seconds = 0.0  # spent making previews in this run (the bench reports it per step)
        self.made = 0

    def after_step(self, done: int, total: int, latents) -> Preview | None:
        if self.disabled or not self.schedule.due(done):
            return None
        started = time.perf_counter()
        try:
            preview = self._make(done, total, latents)
        except Exception as exc:  # noqa: BLE001 - any failure here must leave the job running: previews go off
            self.disabled = True
            log.warning("job %s: live preview failed at step %d (%s: %s); no more previews for this job",
                        self.job_id, done, type(exc).__name__, exc, exc_info=True)
            return None
        finally:
            self.seconds += time.perf_counter() - started
        self.schedule.made(done)
        self.made += 1
        return preview

    @classmethod
    def for_run(cls, latent_map: LatentRgbMap | None, backend, inputs, *, job_id: str, candidate: int,
                settings: PreviewSettings) -> "StepPreviewer | None":
        """The previewer of one denoising run, or None when the job makes no previews."""
        if latent_map is None:
            return None
        return cls(latent_map, lambda latents: backend.preview_latents(latents, inputs), job_id=job_id,
                   candidate=candidate, inputs=inputs, settings=settings)

    def _make(self, done: int, total: int, latents) -> Preview:
        import torch

        with torch.no_grad():
            rgb = self.map.apply(self.to_layout(latents.detach()))
            picture = render_webp(rgb, video_width=self.inputs.width, video_height=self.inputs.height,
                                  video_frames=self.inputs.frames, fps=self.inputs.fps,
                                  longest=self.settings.longest_side)
        return Preview(job_id=self.job_id, candidate=self.candidate, step=done, total_steps=total,
                       media_type=MEDIA_TYPE, data=picture.data, width=picture.width, height=picture.height,
                       frames=picture.frames)


def preview_map(maps, backend, report, settings: PreviewSettings, *, job_id: str) -> LatentRgbMap | None:
    """The loaded model's map, or None: previews off, a backend without a preview layout, or a map that could not
    be fitted (logged; the job runs on without previews)."""
    if not settings.enabled or not backend.makes_previews:
        return None
    try:
        return maps.map_for(backend, report)
    except Exception as exc:  # noqa: BLE001 - a model whose VAE cannot be fitted still makes its video
        log.warning("job %s: no live preview for %s: the preview map could not be fitted (%s: %s)", job_id,
                    backend.model_id, type(exc).__name__, exc, exc_info=True)
        return None
