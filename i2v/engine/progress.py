"""Progress events and cooperative cancellation for a running job."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from i2v.errors import JobCancelled


@dataclass(frozen=True)
class Preview:
    """A cheap look at the video being denoised: an animated image decoded from the latents of one step."""

    job_id: str
    candidate: int  # 1-based
    step: int  # the denoising step whose latents it shows
    total_steps: int
    media_type: str  # e.g. "image/webp"
    data: bytes
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class ProgressEvent:
    job_id: str
    stage: str  # "load" | "denoise" | "decode" | "encode" | "done"
    candidate: int  # 1-based
    candidates: int
    step: int  # steps finished in this stage
    total_steps: int
    elapsed_s: float  # since the job started
    preview: Preview | None = field(default=None, repr=False, compare=False)  # set on steps that made one

    @property
    def fraction(self) -> float:
        """Share of the whole job done, counting denoising steps (decode and encode are short)."""
        stage_share = self.step / self.total_steps if self.total_steps else 0.0
        if self.stage in ("decode", "encode", "done"):
            stage_share = 1.0
        return min(1.0, ((self.candidate - 1) + stage_share) / self.candidates)

    def to_dict(self) -> dict:
        """JSON-friendly: the preview's bytes stay out (the job API serves them), its step stays in."""
        fields = {name: getattr(self, name) for name in
                  ("job_id", "stage", "candidate", "candidates", "step", "total_steps", "elapsed_s")}
        fields["preview_step"] = self.preview.step if self.preview else None
        return {**fields, "fraction": self.fraction}


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Set from any thread; the engine checks it at every denoising step and between stages. ``event``: an event
    shared with another process (``multiprocessing.Event``: a worker reads what the app sets); default a fresh one."""

    def __init__(self, event=None) -> None:
        self._event = event if event is not None else threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("The job was cancelled.")
