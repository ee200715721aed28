"""How a job ended on a worker (``RunOutcome``), what a worker looks like from outside (``WorkerInfo``), and
``run_job``: one job through ``Engine.generate`` with every failure classified, the same in the app's process and in
a worker process."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from i2v.engine.engine import Engine
from i2v.engine.progress import CancelToken, ProgressCallback
from i2v.engine.request import GenerationRequest
from i2v.engine.run import GenerationResult
from i2v.errors import I2VError, JobCancelled, without_server_paths
from i2v.workers.results import result_summary, without_frames

log = logging.getLogger(__name__)

# Text of errors after which a CUDA context is unusable: every later call in the process fails the same way, so
# the worker must be ended and started again (an out-of-memory error is not one: the engine recovers from it).
POISONED_CONTEXT_MARKERS = ("CUDA error", "cudaError", "device-side assert", "illegal memory access",
                            "unspecified launch failure", "CUBLAS_STATUS", "CUDNN_STATUS", "NCCL error")


@dataclass(frozen=True)
class RunOutcome:
    """How a job ended on its worker. ``lost``: the worker died, hung or broke its CUDA context under the job, so
    the job did not end by itself (the job manager re-queues it once)."""

    state: str  # done | failed | cancelled | lost
    kind: str | None = None
    message: str | None = None
    summary: dict[str, Any] | None = None
    result: GenerationResult | None = None  # without frames


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as ``GET /api/workers`` and the metrics show it."""

    name: str  # gpu0, cpu1, in-process
    node: str  # the host name
    gpu: str  # the GPU number as nvidia-smi numbers it, or "cpu"
    pid: int | None
    state: str  # starting | idle | busy | restarting | stopped
    resident_model: str | None
    job: str | None
    restarts: int
    jobs: dict[str, int]  # finished jobs by how they ended: done, failed, cancelled, lost
    held_bytes: int = 0  # GPU memory its process holds for the resident model (its next job reuses it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def poisons_context(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in POISONED_CONTEXT_MARKERS)


def run_job(engine: Engine, request: GenerationRequest, job_id: str, on_progress: ProgressCallback,
            cancel: CancelToken) -> RunOutcome:
    """Run the job: how it ended, with the summary (posters written) when it is done. Never raises."""
    try:
        result = engine.generate(request, job_id=job_id, on_progress=on_progress, cancel=cancel, keep_frames=True)
        summary = result_summary(result)
    except JobCancelled:
        return RunOutcome("cancelled")
    except I2VError as exc:
        log.warning("failed (%s): %s", exc.kind, exc)
        return RunOutcome("failed", exc.kind, without_server_paths(str(exc), engine.output_dir))
    except Exception as exc:  # a bug or an unexpected library error: the worker must keep serving
        if poisons_context(exc):
            log.error("the GPU's CUDA context is broken (%s: %s): this worker must be restarted",
                      type(exc).__name__, exc)
            first_line = (str(exc).splitlines() or [""])[0][:200]
            # Worded to follow "The worker process on GPU n (PID p)" (ProcessWorker says who).
            return RunOutcome("lost", "fatal", f"broke its CUDA context ({type(exc).__name__}: {first_line})")
        log.exception("failed with an unexpected error")
        message = (f"Internal error ({type(exc).__name__}: {exc}). The app keeps running; the log has details "
                   f"under job {job_id}.")
        return RunOutcome("failed", "internal", without_server_paths(message, engine.output_dir))
    return RunOutcome("done", summary=summary, result=without_frames(result))
