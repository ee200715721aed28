"""One job's execution, stage by stage: denoise, decode, checks, retries (NaN: safer precision; out of memory:
smaller plan), files and records. ``Engine.generate`` builds a ``JobRun`` under the device lock."""
from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from i2v.engine import step_times
from i2v.backends import DenoiseInputs, LoadReport, ModelBackend
from i2v.errors import GpuOutOfMemoryError, JobCancelled, NonFiniteOutputError
from i2v.findings import Finding
from i2v.engine.numerics import ensure_finite, video_to_uint8
from i2v.paths import cache_dir
from i2v.memory.plan import ExecutionPlan, safer_dtypes
from i2v.engine.progress import CancelToken, ProgressCallback, ProgressEvent
from i2v.engine.record import SCHEMA, library_versions, reproduce_command, write_sidecar
from i2v.engine.request import GenerationRequest
from i2v.engine.resolve import PreparedJob
from i2v.engine.video import write_mp4

if TYPE_CHECKING:
    from i2v.engine.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoResult:
    path: Path
    sidecar_path: Path
    seed: int
    record: dict
    frames: object = field(default=None, repr=False, compare=False)  # uint8 (F, H, W, 3), only with keep_frames


@dataclass
class GenerationResult:
    job_id: str
    videos: list[VideoResult]
    params: dict
    plan: dict
    notices: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    model_warnings: list[Finding] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


class JobRun:
    """One job's execution. Holds what the stages share, so each stage stays a short method."""

    def __init__(self, engine: Engine, job: PreparedJob, job_id: str, started: float,
                 on_progress: ProgressCallback | None, cancel: CancelToken, keep_frames: bool = False):
        self.engine = engine
        self.job = job
        self.job_id = job_id
        self.started = started
        self.on_progress = on_progress
        self.cancel = cancel
        self.notices = list(job.notices)
        self.timings: dict[str, float] = {"prepare": time.perf_counter() - started}
        self.written: list[Path] = []
        self.candidate = 0
        self.keep_frames = keep_frames
        self.backend_speedups: dict = {}  # what the denoiser ran with (settings, applied, step-cache counts)
        self._phase = "generate"  # "generate" or "decode": where an out-of-memory error happened

    def execute(self) -> GenerationResult:
        job = self.job
        backend = self.engine._backend_for(job.params.model)
        self._progress("load", 0, 1)
        t0 = time.perf_counter()
        report = backend.load(job.plan)
        self.timings["load"] = time.perf_counter() - t0
        videos: list[VideoResult] = []
        try:
            for index, seed in enumerate(job.params.seeds, start=1):
                self.candidate = index
                videos.append(self._candidate(backend, report, seed))
        except JobCancelled:
            self._discard_written()
            log.info("cancelled after %.1f s; removed %d finished file(s)", self._elapsed(), len(self.written))
            raise
        except BaseException:
            log.exception("job failed after %.1f s", self._elapsed())
            # A failed job is not in the history, so videos it finished would be orphans, and a video whose
            # record could not be written (disk full) would be half a result.
            self._discard_written()
            raise
        self.timings["total"] = self._elapsed()
        self._progress("done", 1, 1)
        log.info("done in %.1f s: %s", self.timings["total"], ", ".join(str(v.path) for v in videos))
        finished = self.job  # the plan that ran, smaller after an out-of-memory retry
        return GenerationResult(
            job_id=self.job_id, videos=videos, params=finished.summary()["params"], plan=finished.plan.to_dict(),
            notices=self.notices, warnings=list(finished.warnings), model_warnings=list(report.warnings),
            timings_s={k: round(v, 4) for k, v in self.timings.items()},
        )

    # -- one candidate -------------------------------------------------------------------------------------
    def _candidate(self, backend: ModelBackend, report: LoadReport, seed: int) -> VideoResult:
        job, params = self.job, self.job.params
        inputs = DenoiseInputs(
            image=job.image, prompt=params.prompt, negative_prompt=params.negative_prompt, width=params.width,
            height=params.height, frames=params.frames, steps=params.steps, guidance=params.guidance,
            fps=params.fps, seed=seed,
        )
        _reset_peak_memory(job.plan.device)
        timings: dict[str, float] = {}
        dtype_used, frames = self._frames_with_oom_retry(backend, inputs, timings)
        self.cancel.raise_if_cancelled()
        self.backend_speedups = backend.speedups_record()
        done = self.job  # after an out-of-memory retry, the smaller plan that actually ran
        try:
            step_times.record(
                cache_dir(), device_name=done.plan.gpu_name or "CPU", family=done.spec.family,
                dtype=dtype_used, width=done.params.width, height=done.params.height, frames=done.params.frames,
                steps=done.params.steps, seconds=timings.get("denoise", 0.0),
                variant=step_times.speed_variant(self.engine.speedups),
            )
        except OSError as exc:  # only the time estimates are lost: no job may fail for this bookkeeping
            log.warning("could not save the step timings in %s: %s", cache_dir(), exc)

        self._progress("encode", 0, 1)
        record = self._record(report, seed, dtype_used, frames, timings)
        path, sidecar = self._paths_for(seed)
        record["video"]["file"] = path.name
        t0 = time.perf_counter()
        write_mp4(frames, path, params.fps, comment=json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        # Listed once written: a failed write leaves nothing of ours, and a file already at an --output path
        # must not be deleted for it.
        self.written.append(path)
        record["timings_s"]["encode"] = round(time.perf_counter() - t0, 4)
        write_sidecar(sidecar, record)
        self.written.append(sidecar)
        return VideoResult(path=path, sidecar_path=sidecar, seed=seed, record=record,
                           frames=frames if self.keep_frames else None)

    def _frames_with_oom_retry(self, backend: ModelBackend, inputs: DenoiseInputs, timings: dict):
        """A real out-of-memory error: free what the failed attempt held, retry once on the next plan down."""
        outcome = self._attempt(backend, inputs, timings)
        if isinstance(outcome, str):
            inputs = self._smaller_plan_after_oom(backend, inputs, outcome)
            outcome = self._attempt(backend, inputs, timings)
            if isinstance(outcome, str):
                free_cached_memory()
                raise GpuOutOfMemoryError(
                    f"The GPU ran out of memory, and again on the smaller plan ({outcome}). Lower the resolution "
                    "or frames, or close other programs using the GPU; the app keeps running."
                )
        return outcome

    def _attempt(self, backend: ModelBackend, inputs: DenoiseInputs, timings: dict):
        """(dtype used, frames), or the first line of an out-of-memory error. Returning from the except block
        drops the exception, and with it the traceback that pins the failed attempt's tensors."""
        try:
            return self._frames_with_nan_retry(backend, inputs, timings)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled; the rest re-raised
            if not is_out_of_memory(exc):
                raise
            return first_line(exc)

    def _smaller_plan_after_oom(self, backend: ModelBackend, inputs: DenoiseInputs, error: str) -> DenoiseInputs:
        free_cached_memory()
        job = self.job
        decision = job.decision
        smaller = None
        if decision is not None:
            smaller = self.engine.planner.next_down(job.spec, job.params.width, job.params.height,
                                                    job.params.frames, decision, phase=self._phase)
        if smaller is None:
            raise GpuOutOfMemoryError(
                f"The GPU ran out of memory ({error}) and there is no plan that needs clearly less memory to retry "
                "with. Lower the resolution or frames, or close other programs using the GPU; the app keeps running."
            )
        log.warning("out of memory while %s (%s); retrying once with %s", self._phase, error,
                    smaller.plan.to_dict())
        self.job = job.with_decision(smaller)
        self.notices.extend(smaller.notices)
        backend.load(self.job.plan)
        params = self.job.params
        return replace(inputs, image=self.job.image, width=params.width, height=params.height,
                       frames=params.frames)

    def _decode_or_smaller(self, backend: ModelBackend, latents, plan: ExecutionPlan, timings: dict,
                           dtype: str | None = None):
        """Decode; when the decode runs out of memory and a plan of the same shape decodes with clearly less, free
        memory and decode the same latents again with it: the video is the same and the denoising is not redone.
        That retry is the run's one retry: failing again ends the run."""
        job = self.job
        smaller = None
        try:
            return self._decode(backend, latents, plan, timings, dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled; the rest re-raised
            if not is_out_of_memory(exc) or job.decision is None:
                raise
            smaller = self.engine.planner.smaller_decode(job.spec, job.params.width, job.params.height,
                                                         job.params.frames, job.decision)
            if smaller is None:
                raise  # the whole run is retried on a smaller shape (_frames_with_oom_retry)
            error = first_line(exc)
        free_cached_memory()
        log.warning("out of memory while decoding (%s); decoding the same latents again with %s", error,
                    smaller.plan.to_dict())
        self.job = job.with_decision(smaller)
        self.notices.extend(smaller.notices)
        retry_plan = self.job.plan.with_dtype(plan.dtype)  # a NaN retry may be decoding in a safer dtype
        backend.load(retry_plan)
        try:
            return self._decode(backend, latents, retry_plan, timings, dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are turned into the clear message
            if not is_out_of_memory(exc):
                raise
            second = first_line(exc)
        free_cached_memory()
        raise GpuOutOfMemoryError(
            f"The GPU ran out of memory while decoding the video ({error}), and again decoding with less memory "
            f"({second}). Lower the resolution or frames, or close other programs using the GPU; the app keeps "
            "running."
        )

    def _frames_with_nan_retry(self, backend: ModelBackend, inputs: DenoiseInputs, timings: dict):
        """Run in the plan's dtype; on NaN/Inf retry once in a safer one: the whole run when the latents went bad,
        the VAE decode alone when only the frames did. Returns (dtype actually used, uint8 frames)."""
        plan = self.job.plan
        try:
            latents = self._denoise(backend, inputs, timings)
        except NonFiniteOutputError as bad_run:
            retry = self._safer_dtype(bad_run)
            log.warning("non-finite latents in %s (%s); running again in %s", plan.dtype, bad_run, retry)
            backend.set_dtype(retry)
            try:
                latents = self._denoise(backend, inputs, timings)
                frames = self._decode_or_smaller(backend, latents, plan.with_dtype(retry), timings)
            except NonFiniteOutputError as second:
                raise NonFiniteOutputError(
                    f"NaN/Inf in {plan.dtype} and again after retrying in {retry} ({second}); no video was written. "
                    "Try another seed, fewer steps or lower guidance."
                ) from second
            finally:
                backend.set_dtype(plan.dtype)  # the next run starts from the planned precision again
            self._notice("numerics.run_retried",
                         f"the run produced NaN/Inf in {plan.dtype} ({bad_run}); it was run again in {retry}.")
            return retry, frames
        try:
            return plan.dtype, self._decode_or_smaller(backend, latents, plan, timings)
        except NonFiniteOutputError as bad_decode:
            retry = self._safer_dtype(bad_decode)
            log.warning("non-finite frames from the VAE in %s; decoding again in %s", plan.dtype, retry)
            try:
                frames = self._decode_or_smaller(backend, latents, plan, timings, dtype=retry)
            except NonFiniteOutputError as second:
                raise NonFiniteOutputError(
                    f"The VAE produced NaN/Inf in {plan.dtype} and again in {retry}; no video was written."
                ) from second
            self._notice("numerics.decode_retried",
                         f"the VAE produced NaN/Inf in {plan.dtype} (that would be a black video); the frames were "
                         f"decoded again in {retry}.")
            return retry, frames

    def _safer_dtype(self, error: NonFiniteOutputError) -> str:
        plan = self.job.plan
        safer = safer_dtypes(plan.dtype, self.engine.gpu_for(plan.device))
        if not safer:
            raise NonFiniteOutputError(
                f"{error} This happened in {plan.dtype}, the safest precision, so there is nothing safer to retry "
                "in and no video was written. The weights may be damaged or the settings extreme: try another "
                "seed, fewer steps or lower guidance."
            ) from error
        return safer[0]

    def _notice(self, code: str, text: str) -> None:
        self.notices.append(Finding(code, f"Candidate {self.candidate}: {text}"))

    def _denoise(self, backend: ModelBackend, inputs: DenoiseInputs, timings: dict):
        self._phase = "generate"
        def on_step(done: int, total: int, latents) -> None:
            self.cancel.raise_if_cancelled()
            # Stop at the first bad step rather than denoising garbage for the remaining ones.
            ensure_finite(latents, f"latents after step {done}")
            self._progress("denoise", done, total)

        t0 = time.perf_counter()
        latents = backend.denoise(inputs, on_step)
        ensure_finite(latents, "final latents")
        timings["denoise"] = time.perf_counter() - t0
        return latents

    def _decode(self, backend: ModelBackend, latents, plan: ExecutionPlan, timings: dict, dtype: str | None = None):
        self.cancel.raise_if_cancelled()
        self._phase = "decode"
        self._progress("decode", 0, 1)
        t0 = time.perf_counter()
        frames = video_to_uint8(backend.decode(latents, plan, dtype=dtype))
        timings["decode"] = time.perf_counter() - t0
        return frames

    # -- records and files ---------------------------------------------------------------------------------
    def _record(self, report: LoadReport, seed: int, dtype: str, frames, timings: dict) -> dict:
        job, params = self.job, self.job.params
        settings = params.for_seed(seed, dtype)
        return {
            "schema": SCHEMA,
            "job_id": self.job_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "candidate": self.candidate,
            "candidates": len(params.seeds),
            "video": {
                "file": None,
                "frames": int(frames.shape[0]),
                "fps": params.fps,
                "width": int(frames.shape[2]),
                "height": int(frames.shape[1]),
                "codec": "h264",
                "pix_fmt": "yuv420p",
                "frames_sha256": hashlib.sha256(frames.tobytes()).hexdigest(),
            },
            "params": settings,
            "requested": _requested(job.request),
            "model": {**report.to_dict(), "family": job.spec.family, "random_weights": job.spec.random_weights},
            "plan": {**job.plan.to_dict(), "dtype_used": dtype},
            "speedups": self.backend_speedups,
            "input_image": job.image_info(),
            "notices": [n.to_dict() for n in self.notices],
            "warnings": [w.to_dict() for w in job.warnings],
            "model_warnings": [w.to_dict() for w in report.warnings],
            "timings_s": {**{k: round(v, 4) for k, v in self.timings.items()},
                          **{k: round(v, 4) for k, v in timings.items()}},
            "memory": _peak_memory(job.plan.device),
            "versions": library_versions(),
            "reproduce": reproduce_command(settings, _image_hint(job.request.image)),
        }

    def _paths_for(self, seed: int) -> tuple[Path, Path]:
        requested = self.job.request.output_path
        count = len(self.job.params.seeds)
        if requested is not None:
            path = Path(requested)
            if count > 1:
                path = path.with_name(f"{path.stem}_{self.candidate:02d}{path.suffix}")
        else:
            now = datetime.now()
            path = self.engine.output_dir / now.strftime("%Y%m%d") / (
                f"{now.strftime('%H%M%S')}_{self.job_id}_{self.candidate:02d}_seed{seed}.mp4"
            )
        return path, path.with_suffix(".json")

    def _discard_written(self) -> None:
        for path in self.written:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # e.g. the folder became unwritable: keep the job's own error, say what is left
                log.error("could not remove %s: %s", path, exc)

    # -- helpers -------------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _progress(self, stage: str, step: int, total: int) -> None:
        if self.on_progress is None:
            return
        event = ProgressEvent(self.job_id, stage, max(self.candidate, 1), len(self.job.params.seeds), step, total,
                              round(self._elapsed(), 3))
        try:
            self.on_progress(event)
        except JobCancelled:
            raise
        except Exception:  # a broken UI callback must not kill the job
            log.exception("progress callback failed")


def _requested(request: GenerationRequest) -> dict:
    data = {k: v for k, v in request.__dict__.items() if k != "image"}
    data["seeds"] = list(request.seeds)
    data["output_path"] = str(request.output_path) if request.output_path else None
    return data


def _image_hint(image) -> str:
    return str(image) if isinstance(image, (str, Path)) else "INPUT_IMAGE"


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM error, and the allocation failures cuBLAS/cuDNN report as plain RuntimeErrors."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
    )


def first_line(exc: BaseException) -> str:
    """What an error says, in one line (torch's OOM message goes on with allocator advice)."""
    return (str(exc).splitlines() or [""])[0] or type(exc).__name__


def free_cached_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: str) -> dict:
    usage = {"process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.startswith("cuda"):
        import torch

        usage["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
        usage["cuda_peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
    return usage
