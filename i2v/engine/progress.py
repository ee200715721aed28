"""Progress events and cooperative cancellation for a running job."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from i2v.errors import JobCancelled


@dataclass(frozen=True)
class ProgressEvent:
    job_id: str
    stage: str  # "load" | "denoise" | "decode" | "encode" | "done"
    candidate: int  # 1-based
    candidates: int
    step: int  # steps finished in this stage
    total_steps: int
    elapsed_s: float  # since the job started

    @property
    def fraction(self) -> float:
        """Share of the whole job done, counting denoising steps (decode and encode are short)."""
        stage_share = self.step / self.total_steps if self.total_steps else 0.0
        if self.stage in ("decode", "encode", "done"):
            stage_share = 1.0
        return min(1.0, ((self.candidate - 1) + stage_share) / self.candidates)

    def to_dict(self) -> dict:
        return {**asdict(self), "fraction": self.fraction}


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Set from any thread; the engine checks it at every denoising step and between stages."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("The job was cancelled.")
