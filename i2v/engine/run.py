"""One job's execution, stage by stage: denoise, decode, checks, retries (NaN: safer precision; out of memory:
smaller plan), files and records. ``Engine.generate`` builds a ``JobRun`` under the device lock and hands it what it
works with (``RunServices``); the run never reaches back into the engine.

A retry returns the job as it ran (``Rendered.job``: smaller after an out-of-memory retry) rather than changing a
field, and an out-of-memory error says in which phase it happened (``OutOfMemoryDuring``)."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from i2v.backends import DenoiseInputs, LoadReport, ModelBackend, WithAudio
from i2v.engine import step_times
from i2v.engine.device_memory import (OutOfMemoryDuring, first_line, free_cached_memory, is_out_of_memory,
                                      peak_memory, reset_peak_memory)
from i2v.engine.numerics import audio_to_float32, ensure_finite, video_to_uint8
from i2v.engine.progress import CancelToken, Preview, ProgressCallback, ProgressEvent
from i2v.engine.record import SCHEMA, library_versions, reproduce_command, write_sidecar
from i2v.engine.request import GenerationRequest
from i2v.engine.resolve import PreparedJob
from i2v.engine.video import AudioTrack, write_mp4
from i2v.errors import GpuOutOfMemoryError, JobCancelled, NonFiniteOutputError
from i2v.findings import Finding
from i2v.gpu.hardware import GpuDevice
from i2v.planning.plan import ExecutionPlan, PlanDecision, Planner, safer_dtypes
from i2v.paths import cache_dir
from i2v.preview import PreviewMaps, PreviewSettings, StepPreviewer, preview_map
from i2v.speedups import Speedups

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


@dataclass(frozen=True)
class RunServices:
    """What a job run works with, handed over by the engine."""

    backend: ModelBackend  # the resident model, for this job's model
    planner: Planner  # asked for a smaller plan after a real out-of-memory error
    gpu: GpuDevice | None  # the plan's GPU (which precisions it has); None on the CPU
    output_dir: Path
    speedups: Speedups  # the settings the backend applies (the step-time estimates are kept per combination)
    preview_maps: PreviewMaps = field(default_factory=PreviewMaps)  # each model's latent→RGB map, fitted once
    previews: PreviewSettings = PreviewSettings()  # live previews: on/off and how often


@dataclass(frozen=True)
class Rendered:
    """A candidate's frames and how they were made."""

    job: PreparedJob  # the job as it ran: smaller after an out-of-memory retry
    dtype: str  # the precision it ran in: safer after a NaN retry
    frames: object  # uint8 (F, H, W, 3)
    audio: AudioTrack | None = None  # the sound track, for a model with sound unless the request turned it off


class JobRun:
    """One job's execution. Holds what the stages share (the services, the job's notices and files), so each stage
    stays a short method; the job that runs is passed from stage to stage and returned."""

    def __init__(self, services: RunServices, job: PreparedJob, job_id: str, started: float,
                 on_progress: ProgressCallback | None, cancel: CancelToken, keep_frames: bool = False):
        self.services = services
        self.backend = services.backend
        self.job = job  # as prepared; each candidate returns the job it actually ran
        self.job_id = job_id
        self.started = started
        self.on_progress = on_progress
        self.cancel = cancel
        self.keep_frames = keep_frames
        self.notices = list(job.notices)  # the job's, then each retry's
        self.timings: dict[str, float] = {"prepare": time.perf_counter() - started}
        self.written: list[Path] = []
        self.candidate = 0  # the candidate being made, for progress events and notices
        self.loras: list[dict] = []  # the LoRAs the denoiser ran with, for the records
        self.preview_map = None  # the model's latent→RGB map once loaded; None: no live previews in this job

    def execute(self) -> GenerationResult:
        self._progress("load", 0, 1)
        t0 = time.perf_counter()
        report = self.backend.load(self.job.plan)
        if self.on_progress is not None:  # previews only for someone who listens to the progress
            # At load, so its one-off fit (a few small VAE encodes per model revision) is not counted as denoising.
            self.preview_map = preview_map(self.services.preview_maps, self.backend, report, self.services.previews,
                                           job_id=self.job_id)
        # Before any step: a LoRA that fits nothing is refused here, with no file written.
        self.loras, lora_warnings = self.backend.use_loras(self.job.lora_files)
        self.job = replace(self.job, warnings=self.job.warnings + lora_warnings) if lora_warnings else self.job
        self.timings["load"] = time.perf_counter() - t0
        job, videos = self.job, []
        try:
            for index, seed in enumerate(self.job.params.seeds, start=1):
                self.candidate = index
                video, job = self._candidate(job, report, seed)  # later candidates keep a smaller plan
                videos.append(video)
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
        return GenerationResult(
            job_id=self.job_id, videos=videos, params=job.summary()["params"], plan=job.plan.to_dict(),
            notices=self.notices, warnings=list(job.warnings), model_warnings=list(report.warnings),
            timings_s={k: round(v, 4) for k, v in self.timings.items()},
        )

    # -- one candidate -------------------------------------------------------------------------------------
    def _candidate(self, job: PreparedJob, report: LoadReport, seed: int) -> tuple[VideoResult, PreparedJob]:
        reset_peak_memory(job.plan.device)
        timings: dict[str, float] = {}
        rendered = self._render_with_oom_retry(job, seed, timings)
        self.cancel.raise_if_cancelled()
        speedups = self.backend.speedups_record()  # what the denoiser ran with (settings, applied, cache counts)
        denoising = self.backend.denoising_record()  # which path it took (LTX-2: one stage or two, each's size)
        self._remember_step_time(rendered, timings)

        self._progress("encode", 0, 1)
        record = self._record(rendered, report, seed, timings, speedups, denoising)
        path, sidecar = self._paths_for(rendered.job, seed)
        record["video"]["file"] = path.name
        t0 = time.perf_counter()
        write_mp4(rendered.frames, path, rendered.job.params.fps,
                  comment=json.dumps(record, ensure_ascii=False, separators=(",", ":")), audio=rendered.audio)
        # Listed once written: a failed write leaves nothing of ours, and a file already at an --output path
        # must not be deleted for it.
        self.written.append(path)
        record["timings_s"]["encode"] = round(time.perf_counter() - t0, 4)
        write_sidecar(sidecar, record)
        self.written.append(sidecar)
        video = VideoResult(path=path, sidecar_path=sidecar, seed=seed, record=record,
                            frames=rendered.frames if self.keep_frames else None)
        return video, rendered.job

    def _remember_step_time(self, rendered: Rendered, timings: dict) -> None:
        params = rendered.job.params
        if rendered.job.two_stage is not None:  # steps at two sizes: no per-step figure for this size and step count
            return
        try:
            step_times.record(
                cache_dir(), device_name=rendered.job.plan.gpu_name or "CPU", family=rendered.job.spec.family,
                dtype=rendered.dtype, width=params.width, height=params.height, frames=params.frames,
                steps=params.steps, seconds=timings.get("denoise", 0.0),
                variant=step_times.speed_variant(self.services.speedups),
            )
        except OSError as exc:  # only the time estimates are lost: no job may fail for this bookkeeping
            log.warning("could not save the step timings in %s: %s", cache_dir(), exc)

    # -- out of memory: one retry on a plan that needs clearly less in the phase that failed ---------------------
    def _render_with_oom_retry(self, job: PreparedJob, seed: int, timings: dict) -> Rendered:
        """A real out-of-memory error: free what the failed attempt held, retry once on the next plan down."""
        try:
            return self._render(job, denoise_inputs(job, seed), timings)
        except OutOfMemoryDuring as oom:  # it holds no tensor (see OutOfMemoryDuring)
            phase, error = oom.phase, oom.message
        free_cached_memory()
        smaller = self._smaller_job(job, phase, error)
        try:
            return self._render(smaller, denoise_inputs(smaller, seed), timings)
        except OutOfMemoryDuring as oom:
            second = oom.message
        free_cached_memory()
        raise GpuOutOfMemoryError(
            f"The GPU ran out of memory, and again on the smaller plan ({second}). Lower the resolution "
            "or frames, or close other programs using the GPU; the app keeps running."
        )

    def _smaller_job(self, job: PreparedJob, phase: str, error: str) -> PreparedJob:
        smaller = None
        if job.decision is not None:
            smaller = self.services.planner.next_down(job.spec, job.params.width, job.params.height,
                                                      job.params.frames, job.decision, phase=phase)
        if smaller is None:
            raise GpuOutOfMemoryError(
                f"The GPU ran out of memory ({error}) and there is no plan that needs clearly less memory to retry "
                "with. Lower the resolution or frames, or close other programs using the GPU; the app keeps running."
            )
        log.warning("out of memory in the %s phase (%s); retrying once with %s", phase, error,
                    smaller.plan.to_dict())
        return self._switch_to(job, smaller, smaller.plan)

    def _switch_to(self, job: PreparedJob, decision: PlanDecision, plan: ExecutionPlan) -> PreparedJob:
        """The job on the planner's smaller decision, with its notices, and the model placed for ``plan``."""
        self.notices.extend(decision.notices)
        self.backend.load(plan)
        return job.with_decision(decision)

    def _decode_or_smaller(self, job: PreparedJob, latents, plan: ExecutionPlan, timings: dict,
                           dtype: str | None = None) -> Rendered:
        """Decode; when the decode runs out of memory and a plan of the same shape decodes with clearly less, free
        memory and decode the same latents again with it: the video is the same and the denoising is not redone.
        That retry is the run's one retry: failing again ends the run."""
        try:
            return Rendered(job, dtype or plan.dtype, *self._decode(latents, plan, timings, dtype=dtype))
        except OutOfMemoryDuring as oom:
            error = oom.message
        smaller = None
        if job.decision is not None:
            smaller = self.services.planner.smaller_decode(job.spec, job.params.width, job.params.height,
                                                           job.params.frames, job.decision)
        if smaller is None:
            raise OutOfMemoryDuring("decode", error)  # the whole run is retried on a smaller shape
        free_cached_memory()
        log.warning("out of memory while decoding (%s); decoding the same latents again with %s", error,
                    smaller.plan.to_dict())
        retry_plan = smaller.plan.with_dtype(plan.dtype)  # a NaN retry may be decoding in a safer dtype
        job = self._switch_to(job, smaller, retry_plan)
        try:
            return Rendered(job, dtype or plan.dtype, *self._decode(latents, retry_plan, timings, dtype=dtype))
        except OutOfMemoryDuring as oom:
            second = oom.message
        free_cached_memory()
        raise GpuOutOfMemoryError(
            f"The GPU ran out of memory while decoding the video ({error}), and again decoding with less memory "
            f"({second}). Lower the resolution or frames, or close other programs using the GPU; the app keeps "
            "running."
        )

    # -- NaN/Inf: one retry in a safer precision ---------------------------------------------------------------
    def _render(self, job: PreparedJob, inputs: DenoiseInputs, timings: dict) -> Rendered:
        """Run in the plan's dtype; on NaN/Inf retry once in a safer one: the whole run when the latents went bad,
        the VAE decode alone when only the frames did."""
        plan = job.plan
        try:
            latents = self._denoise(inputs, timings)
        except NonFiniteOutputError as bad_run:
            retry = self._safer_dtype(plan, bad_run)
            log.warning("non-finite latents in %s (%s); running again in %s", plan.dtype, bad_run, retry)
            self.backend.set_dtype(retry)
            try:
                latents = self._denoise(inputs, timings)
                rendered = self._decode_or_smaller(job, latents, plan.with_dtype(retry), timings)
            except NonFiniteOutputError as second:
                raise NonFiniteOutputError(
                    f"NaN/Inf in {plan.dtype} and again after retrying in {retry} ({second}); no video was written. "
                    "Try another seed, fewer steps or lower guidance."
                ) from second
            finally:
                self.backend.set_dtype(plan.dtype)  # the next run starts from the planned precision again
            self._notice("numerics.run_retried",
                         f"the run produced NaN/Inf in {plan.dtype} ({bad_run}); it was run again in {retry}.")
            return rendered
        try:
            return self._decode_or_smaller(job, latents, plan, timings)
        except NonFiniteOutputError as bad_decode:
            retry = self._safer_dtype(plan, bad_decode)
            log.warning("non-finite frames from the VAE in %s; decoding again in %s", plan.dtype, retry)
            try:
                rendered = self._decode_or_smaller(job, latents, plan, timings, dtype=retry)
            except NonFiniteOutputError as second:
                raise NonFiniteOutputError(
                    f"The VAE produced NaN/Inf in {plan.dtype} and again in {retry}; no video was written."
                ) from second
            self._notice("numerics.decode_retried",
                         f"the VAE produced NaN/Inf in {plan.dtype} (that would be a black video); the frames were "
                         f"decoded again in {retry}.")
            return rendered

    def _safer_dtype(self, plan: ExecutionPlan, error: NonFiniteOutputError) -> str:
        safer = safer_dtypes(plan.dtype, self.services.gpu)
        if not safer:
            raise NonFiniteOutputError(
                f"{error} This happened in {plan.dtype}, the safest precision, so there is nothing safer to retry "
                "in and no video was written. The weights may be damaged or the settings extreme: try another "
                "seed, fewer steps or lower guidance."
            ) from error
        return safer[0]

    def _notice(self, code: str, text: str) -> None:
        self.notices.append(Finding(code, f"Candidate {self.candidate}: {text}"))

    # -- the two phases ------------------------------------------------------------------------------------
    def _denoise(self, inputs: DenoiseInputs, timings: dict):
        previewer = StepPreviewer.for_run(self.preview_map, self.backend, inputs, job_id=self.job_id,
                                          candidate=self.candidate, settings=self.services.previews)

        def on_step(done: int, total: int, latents) -> None:
            self.cancel.raise_if_cancelled()
            # Stop at the first bad step rather than denoising garbage for the remaining ones.
            ensure_finite(latents, f"latents after step {done}")
            preview = previewer.after_step(done, total, latents) if previewer else None
            self._progress("denoise", done, total, preview)

        t0 = time.perf_counter()
        latents = _in_phase("generate", self.backend.denoise, inputs, on_step)
        if previewer is not None:
            timings["preview"] = previewer.seconds  # part of "denoise"; the bench reports it per step
        if isinstance(latents, WithAudio):  # a model with sound: both latents must be finite
            ensure_finite(latents.video, "final video latents")
            if latents.audio is not None:
                ensure_finite(latents.audio, "final audio latents")
        else:
            ensure_finite(latents, "final latents")
        timings["denoise"] = time.perf_counter() - t0
        return latents

    def _decode(self, latents, plan: ExecutionPlan, timings: dict,
                dtype: str | None = None) -> tuple[object, AudioTrack | None]:
        """(uint8 frames, the sound track or None). NaN/Inf in either fails the decode (and is retried as one)."""
        self.cancel.raise_if_cancelled()
        self._progress("decode", 0, 1)
        t0 = time.perf_counter()
        decoded = _in_phase("decode", self.backend.decode, latents, plan, dtype=dtype)
        audio = None
        if isinstance(decoded, WithAudio):
            if decoded.audio is not None:
                audio = AudioTrack(audio_to_float32(decoded.audio), decoded.sample_rate)
            decoded = decoded.video
        frames = video_to_uint8(decoded)
        timings["decode"] = time.perf_counter() - t0
        return frames, audio

    # -- records and files ---------------------------------------------------------------------------------
    def _record(self, rendered: Rendered, report: LoadReport, seed: int, timings: dict, speedups: dict,
                denoising: dict) -> dict:
        job, frames, params = rendered.job, rendered.frames, rendered.job.params
        settings = params.for_seed(seed, rendered.dtype)
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
            # The sound track in the mp4 (codec, sample rate, channels, seconds), or null: a model without sound, or
            # audio turned off (params.audio says which).
            "audio": rendered.audio.to_dict() if rendered.audio is not None else None,
            "params": settings,
            "requested": _requested(job.request),
            "model": {**report.to_dict(), "family": job.spec.family, "random_weights": job.spec.random_weights},
            "plan": {**job.plan.to_dict(), "dtype_used": rendered.dtype},
            "speedups": speedups,
            **({"denoising": denoising} if denoising else {}),
            "loras": list(self.loras),  # file name, sha256, strength, source, tensors applied and skipped
            "input_image": job.image_info(),
            "notices": [n.to_dict() for n in self.notices],
            "warnings": [w.to_dict() for w in job.warnings],
            "model_warnings": [w.to_dict() for w in report.warnings],
            "timings_s": {**{k: round(v, 4) for k, v in self.timings.items()},
                          **{k: round(v, 4) for k, v in timings.items()}},
            "memory": peak_memory(job.plan.device),
            "versions": library_versions(),
            "reproduce": reproduce_command(settings, _image_hint(job.request.image), _last_image_hint(job.request)),
        }

    def _paths_for(self, job: PreparedJob, seed: int) -> tuple[Path, Path]:
        requested = job.request.output_path
        if requested is not None:
            path = Path(requested)
            if len(job.params.seeds) > 1:
                path = path.with_name(f"{path.stem}_{self.candidate:02d}{path.suffix}")
        else:
            now = datetime.now()
            path = self.services.output_dir / now.strftime("%Y%m%d") / (
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

    def _progress(self, stage: str, step: int, total: int, preview: Preview | None = None) -> None:
        if self.on_progress is None:
            return
        event = ProgressEvent(self.job_id, stage, max(self.candidate, 1), len(self.job.params.seeds), step, total,
                              round(self._elapsed(), 3), preview)
        try:
            self.on_progress(event)
        except JobCancelled:
            raise
        except Exception:  # a broken UI callback must not kill the job
            log.exception("progress callback failed")


def denoise_inputs(job: PreparedJob, seed: int) -> DenoiseInputs:
    params = job.params
    return DenoiseInputs(
        image=job.image, prompt=params.prompt, negative_prompt=params.negative_prompt, width=params.width,
        height=params.height, frames=params.frames, steps=params.steps, guidance=params.guidance,
        fps=params.fps, seed=seed, last_image=job.last_image, audio=params.audio, flow_shift=params.flow_shift,
        sigmas=params.sigmas, two_stage=job.two_stage,
    )


def _in_phase(phase: str, call, *args, **kwargs):
    """``call(...)``; a real out-of-memory error becomes ``OutOfMemoryDuring(phase)``, raised after the except block
    so that it does not carry the original (whose traceback pins the failed attempt's tensors)."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are translated; the rest re-raised
        if not is_out_of_memory(exc):
            raise
        message = first_line(exc)
    raise OutOfMemoryDuring(phase, message)


def _requested(request: GenerationRequest) -> dict:
    data = {k: v for k, v in request.__dict__.items() if k not in ("image", "last_image")}
    # The last frame is named like the picture in the reproduce line (a path, or a stand-in for bytes/an image).
    data["last_image"] = _last_image_hint(request)
    data["seeds"] = list(request.seeds)
    data["loras"] = [choice.to_dict() for choice in request.loras]
    data["crop_focus"] = list(request.crop_focus)  # as JSON keeps it, so the record and its sidecar are equal
    data["output_path"] = str(request.output_path) if request.output_path else None
    return data


def _image_hint(image, stand_in: str = "INPUT_IMAGE") -> str:
    return str(image) if isinstance(image, (str, Path)) else stand_in


def _last_image_hint(request: GenerationRequest) -> str | None:
    return None if request.last_image is None else _image_hint(request.last_image, "LAST_IMAGE")
