"""How long a running job has left, said only once there is something to say it from.

The engine reports a denoising step when it has *finished*, and the first step of a run carries the warm-up
(kernels chosen, caches filled, the image and prompt encoded): timing the steps from the first report made the
old estimate "about 0 s left" at step 1 and far too low after it (issue 18: 4.7× on a first job). So:

* the pace is measured between step reports only (the first step's warm-up is already spent, and is not taken
  as the pace of the steps to come);
* before two steps of this job have been seen, the estimate comes from earlier jobs on this device
  (``prior_step_s``, learned by ``engine.step_times``) or there is none ("estimating…" on the page);
* after the last step of a candidate come the decode and the video file: measured on the first candidate that
  ends, guessed as ``FINISH_ALLOWANCE_STEPS`` steps before that;
* a model still loading adds an unknown time: the page says "loading the model, then about …".
"""
from __future__ import annotations

from dataclasses import dataclass

from i2v.engine.progress import ProgressEvent

FINISH_ALLOWANCE_STEPS = 2.0  # decode + writing the video, in steps, until a candidate has ended and was measured


@dataclass
class _Mark:
    candidate: int
    step: int
    at: float  # monotonic seconds


class Eta:
    """Fed every progress event of one job (``observe``); ``remaining(now)`` counts down between events."""

    def __init__(self, prior_step_s: float | None = None):
        self.prior_step_s = prior_step_s  # seconds per step from earlier jobs here, or None
        self._last_step: _Mark | None = None  # the newest denoising step report
        self._step_seconds = 0.0  # summed intervals between consecutive step reports of one candidate
        self._steps_timed = 0
        self._finish_s: float | None = None  # measured decode + encode + next warm-up, per candidate
        self._candidate_ended_at: float | None = None  # when the last step of the previous candidate was reported
        self._at_event: float | None = None  # the estimate made at the newest event
        self._event_at = 0.0

    @property
    def step_s(self) -> float | None:
        """Seconds per denoising step: this job's own pace once two steps were seen, else the prior."""
        if self._steps_timed:
            return self._step_seconds / self._steps_timed
        return self.prior_step_s

    def observe(self, event: ProgressEvent, now: float) -> None:
        if event.stage == "denoise" and event.step > 0:
            self._time_step(event, now)
        self._at_event = self._estimate(event)
        self._event_at = now

    def remaining(self, now: float) -> float | None:
        """Seconds left, or None while there is no honest estimate. Never below zero: a job late on its estimate
        is "finishing", not "0 s left"."""
        if self._at_event is None:
            return None
        return round(max(0.0, self._at_event - (now - self._event_at)), 1)

    def _time_step(self, event: ProgressEvent, now: float) -> None:
        last = self._last_step
        if last is not None and last.candidate == event.candidate and event.step > last.step:
            self._step_seconds += now - last.at
            self._steps_timed += event.step - last.step
        elif last is not None and event.candidate > last.candidate and self._candidate_ended_at is not None:
            # From the previous candidate's last step to this one's first: its decode and file, then our warm-up.
            pace = self.step_s or 0.0
            self._finish_s = max(0.0, now - self._candidate_ended_at - pace * event.step)
        if event.step == event.total_steps:
            self._candidate_ended_at = now
        self._last_step = _Mark(event.candidate, event.step, now)

    def _estimate(self, event: ProgressEvent) -> float | None:
        step_s = self.step_s
        if step_s is None or event.total_steps <= 0:
            return None
        if event.stage in ("decode", "encode", "done"):
            steps_left = (event.candidates - event.candidate) * event.total_steps
            finishes_left = event.candidates - event.candidate + (0 if event.stage == "done" else 0.5)
        else:
            steps_done = event.step if event.stage == "denoise" else 0
            steps_left = (event.candidates - event.candidate + 1) * event.total_steps - steps_done
            finishes_left = event.candidates - event.candidate + 1
        finish_s = self._finish_s if self._finish_s is not None else FINISH_ALLOWANCE_STEPS * step_s
        return step_s * steps_left + finish_s * finishes_left
