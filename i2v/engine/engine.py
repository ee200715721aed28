"""The engine: a request in, videos and their records out.

Read ``Engine.generate`` top to bottom: prepare (validate, image, guidance, memory plan; no model loaded) →
device lock → ``JobRun`` (``run.py``): load → per candidate: denoise, check latents, decode, check frames,
encode and write → result. NaN/Inf are caught before any uint8 conversion and retried once in a safer
precision, an out-of-memory error once on a smaller plan; a cancelled job leaves no file behind.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from i2v.backends import LoadReport, ModelBackend, backend_class_for, backend_for
from i2v.engine.cpu_threads import cpu_threads_for
from i2v.engine.disk import DEFAULT_RESERVE_BYTES, check_free_space, job_bytes
from i2v.gpu.hardware import GpuDevice, GpuInfo, TorchCudaInfo
from i2v.logs import job_context, new_job_id
from i2v.paths import outputs_dir
from i2v.planning.plan import Planner
from i2v.planning.planner import MemoryPlanner
from i2v.engine.presets import Preset
from i2v.engine.progress import CancelToken, ProgressCallback
from i2v.guidance.images import DecodedImages
from i2v.guidance.prompt_lint import KeywordLibrary
from i2v.engine.request import GenerationRequest
from i2v.engine.resolve import PreparedJob, prepare
from i2v.preview import PreviewMaps, PreviewSettings
from i2v.speedups import Speedups
from i2v.engine.run import GenerationResult, JobRun, RunServices, VideoResult

__all__ = ["Engine", "GenerationResult", "VideoResult", "device_lock"]

log = logging.getLogger(__name__)

# One generation per device at a time, whoever calls (UI, API, CLI in the same process).
_device_locks: dict[str, threading.Lock] = {}
_device_locks_guard = threading.Lock()


def device_lock(device: str) -> threading.Lock:
    with _device_locks_guard:
        return _device_locks.setdefault(device, threading.Lock())


class Engine:
    def __init__(
        self,
        *,
        gpu_info: GpuInfo | None = None,
        planner: Planner | None = None,
        output_dir: Path | None = None,
        presets: dict[str, Preset] | None = None,
        keywords: KeywordLibrary | None = None,
        min_free_bytes: int = DEFAULT_RESERVE_BYTES,
        speedups: Speedups | None = None,
        previews: PreviewSettings | None = None,
        preview_maps: PreviewMaps | None = None,
    ):
        self.gpu_info = gpu_info or TorchCudaInfo()
        self.planner = planner or MemoryPlanner(self.gpu_info, busy=lambda device: device_lock(device).locked())
        self.output_dir = Path(output_dir) if output_dir is not None else outputs_dir()
        self.presets = presets
        self.keywords = keywords
        self.min_free_bytes = min_free_bytes
        self.speedups = speedups or Speedups()  # settings; a change reaches the resident model at the next job
        self.previews = previews or PreviewSettings()  # live previews during denoising (i2v.preview)
        self.preview_maps = preview_maps or PreviewMaps()  # each model's latent→RGB map, fitted once per revision
        self._backend: ModelBackend | None = None
        self._pictures = DecodedImages()  # the page prepares the same upload on every change of a control
        self._backend_guard = threading.Lock()

    # -- before the run ------------------------------------------------------------------------------------
    def prepare(self, request: GenerationRequest, *, extra_bytes: int = 0) -> PreparedJob:
        """Validate, plan and check the free disk space without loading anything. Raises ``BadInputError`` with a
        message for the user. ``extra_bytes``: what the caller will write for the job besides its videos (the
        server's copy of the input picture), so that too stays within the disk reserve."""
        backend = self._backend
        counter = None
        if backend is not None and backend.model_id == request.model and backend.count_tokens("") is not None:
            counter = backend.count_tokens
        job = prepare(request, self.planner, presets=self.presets, keywords=self.keywords, token_counter=counter,
                      load=self._pictures.load)
        params = job.params
        folder = Path(request.output_path).parent if request.output_path is not None else self.output_dir
        need = job_bytes(params.width, params.height, params.frames, len(params.seeds)) + extra_bytes
        check_free_space(folder, need, self.min_free_bytes)
        return job

    def load(self, request: GenerationRequest) -> LoadReport:
        """Load the request's model for its plan now (keeps it warm for the next job)."""
        job = self.prepare(request)
        with device_lock(job.plan.device):
            return self._backend_for(job.params.model, job.params.family, job.params.transformer_file).load(job.plan)

    @property
    def backend(self) -> ModelBackend | None:
        """The resident model backend, if any."""
        return self._backend

    @property
    def resident_model(self) -> str | None:
        """The model whose weights are in memory now (the last one a job ran), or None before the first load."""
        backend = self._backend
        return backend.model_id if backend is not None and backend.is_loaded else None

    # -- the run -------------------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        *,
        job_id: str | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        keep_frames: bool = False,
    ) -> GenerationResult:
        """Make the request's videos. ``keep_frames`` also returns each video's uint8 frames (for comparisons
        and previews without decoding the mp4)."""
        job_id = job_id or new_job_id()
        cancel = cancel or CancelToken()
        with job_context(job_id):
            started = time.perf_counter()
            job = self.prepare(request)
            log.info("request: %s", json.dumps(job.summary()["params"], ensure_ascii=False))
            with device_lock(job.plan.device):
                cancel.raise_if_cancelled()
                backend = self._backend_for(job.params.model, job.params.family, job.params.transformer_file)
                services = RunServices(backend=backend, planner=self.planner,
                                       gpu=self.gpu_for(job.plan.device), output_dir=self.output_dir,
                                       speedups=self.speedups, preview_maps=self.preview_maps,
                                       previews=self.previews)
                with cpu_threads_for(job.spec.random_weights, job.plan.device):
                    return JobRun(services, job, job_id, started, on_progress, cancel, keep_frames).execute()

    def _backend_for(self, model: str, family: str | None = None, transformer_file: str | None = None
                     ) -> ModelBackend:
        """One model resident at a time: switching frees the previous one first. A model is its name, its family
        and the transformer file (a GGUF) it was loaded with."""
        wanted = backend_class_for(model, family)
        with self._backend_guard:
            current = self._backend
            if current is not None and (current.model_id != model or type(current) is not wanted
                                        or getattr(current, "transformer_file", None) != transformer_file):
                self._backend.unload()
                self._backend = None
            if self._backend is None:
                self._backend = backend_for(model, family, transformer_file)
            self._backend.configure_speedups(self.speedups)
            return self._backend

    def gpu_for(self, device: str) -> GpuDevice | None:
        if not device.startswith("cuda"):
            return None
        index = int(device.split(":")[1]) if ":" in device else 0
        return next((gpu for gpu in self.gpu_info.devices() if gpu.index == index), None)

    def unload(self) -> None:
        with self._backend_guard:
            if self._backend is not None:
                self._backend.unload()
                self._backend = None
