"""What every worker shares: one job at a time, and the bookkeeping ``GET /api/workers`` shows (state, the job,
the resident model, restarts, finished jobs by outcome). ``InProcessWorker`` and ``ProcessWorker`` say how a job
runs (``_run``)."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter

from i2v.engine.device_memory import held_gpu_bytes
from i2v.engine.progress import CancelToken, ProgressCallback
from i2v.engine.request import GenerationRequest
from i2v.errors import I2VError
from i2v.workers.outcome import RunOutcome, WorkerInfo, run_job

log = logging.getLogger(__name__)

OUTCOMES = ("done", "failed", "cancelled", "lost")


class Worker:
    def __init__(self, name: str, gpu: str):
        self.name = name
        self.gpu = gpu
        self.node = socket.gethostname()
        self.last_used = 0.0  # monotonic time its last job ended (0: never), for least-recently-used dispatch
        self.restarts = 0
        self._state = "starting"
        self._job: str | None = None
        self._finished: Counter[str] = Counter()
        self._guard = threading.Lock()

    # -- what subclasses provide ---------------------------------------------------------------------------
    def start(self) -> None:
        self._set_state("idle")

    def stop(self) -> None:
        self._set_state("stopped")

    def warm_up(self, request: GenerationRequest) -> None:
        """Load the request's model now, so the first job does not wait for it. Never raises."""

    @property
    def pid(self) -> int | None:
        return None

    def node_gpu_status(self) -> dict | None:
        """The GPUs of the worker's box as ``/gpu_status`` shows them, when that box is not the app's (a Ray actor on
        another node); None when the app's own monitor sees them."""
        return None

    @property
    def resident_model(self) -> str | None:
        return None

    @property
    def held_bytes(self) -> int:
        """GPU memory its process holds for its resident model (the allocator's reserve, as the worker said after
        its last load or job): its next job reuses it, so it counts as room for that job (``GpuRoom``)."""
        return 0

    def _run(self, job_id: str, request: GenerationRequest, on_progress: ProgressCallback,
             cancel: CancelToken) -> RunOutcome:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------------
    @property
    def gpu_index(self) -> int | None:
        """Its GPU as nvidia-smi numbers it (how the monitor reads that GPU's free memory), None on the CPU."""
        return int(self.gpu) if self.gpu.isdigit() else None

    @property
    def ready(self) -> bool:
        """Whether it can take a job now (started, not running one, not restarting)."""
        return self._state == "idle"

    def run(self, job_id: str, request: GenerationRequest, on_progress: ProgressCallback,
            cancel: CancelToken) -> RunOutcome:
        """Run one job here and say how it ended; never raises."""
        with self._guard:
            self._state, self._job = "busy", job_id
        try:
            outcome = self._run(job_id, request, on_progress, cancel)
        finally:
            with self._guard:
                self._job = None
                if self._state == "busy":
                    self._state = "idle"
            self.last_used = time.monotonic()
        with self._guard:
            self._finished[outcome.state] += 1
        return outcome

    def info(self) -> WorkerInfo:
        with self._guard:
            return WorkerInfo(name=self.name, node=self.node, gpu=self.gpu, pid=self.pid, state=self._state,
                              resident_model=self.resident_model, job=self._job, restarts=self.restarts,
                              jobs={state: self._finished[state] for state in OUTCOMES},
                              held_bytes=self.held_bytes)

    def _set_state(self, state: str) -> None:
        with self._guard:
            self._state = state


class InProcessWorker(Worker):
    """Runs jobs in the app's own process through its ``Engine`` (a box without a GPU, the CLI, the tests that
    instrument the engine). It cannot be restarted: a job that breaks the process's CUDA context fails."""

    def __init__(self, engine, gpu: str = "cpu"):
        super().__init__("in-process", gpu)
        self.engine = engine

    @property
    def pid(self) -> int | None:
        return os.getpid()

    @property
    def resident_model(self) -> str | None:
        backend = self.engine.backend
        return backend.model_id if backend is not None else None

    @property
    def held_bytes(self) -> int:
        return held_gpu_bytes()

    def warm_up(self, request: GenerationRequest) -> None:
        try:
            report = self.engine.load(request)
        except I2VError as exc:
            log.error("the model could not be loaded yet: %s", exc)
            return
        log.info("model %s ready (%s)", request.model, report.to_dict().get("source", "loaded"))

    def _run(self, job_id, request, on_progress, cancel) -> RunOutcome:
        outcome = run_job(self.engine, request, job_id, on_progress, cancel)
        if outcome.state == "lost":  # nothing to restart here: the job fails with the reason
            return RunOutcome("failed", outcome.kind, f"The app's process {outcome.message}. Restart the app.")
        return outcome
