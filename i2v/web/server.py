"""The web server: a FastAPI app with our JSON routes, the Gradio page mounted at ``/``.

``create_app`` wires engine, job manager, monitor and page from the settings; ``ServerThread`` runs it in the
background (tests, and any caller that wants the app in-process).
"""
from __future__ import annotations

import functools
import html
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from i2v.engine import step_times
from i2v.engine.engine import Engine
from i2v.service.folder_lock import FolderLock
from i2v.service.idle import IdleWatcher
from i2v.service.jobs import JobListener, JobManager
from i2v.service.jobstore import FILE_NAME as JOBS_DB
from i2v.service.jobstore import JobStore
from i2v.guidance.keywords import load_keyword_library
from i2v.backends.catalog import offered_models
from i2v.gpu.monitor import GpuMonitor
from i2v.paths import cache_dir
from i2v.engine.presets import load_presets
from i2v.service.retention import RetentionListener, prune_outputs
from i2v.engine.request import DEFAULT_MODEL
from i2v.settings import AppSettings
from i2v.web.auth import BasicAuthMiddleware
from i2v.web.file_guard import guard_files
from i2v.web.job_api import add_job_routes
from i2v.web.hosts import HostCheckMiddleware, allowed_host_names
from i2v.web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from i2v.web.metrics import Metrics
from i2v.web.plain_errors import plain_input_errors
from i2v.web.ui import Studio
from i2v.web.workers_api import add_worker_routes
from i2v.workers.gpu_room import GpuRoom, WorkersGpuView
from i2v.workers.pool import build_workers

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
TINY = "tiny"


@dataclass
class StudioApp:
    """Everything one running app holds. Whoever serves it sets ``server`` and starts ``idle``, so the idle
    watcher can stop the server."""

    fastapi: FastAPI
    blocks: gr.Blocks
    jobs: JobManager
    monitor: object
    model: str
    started_at: float
    idle: IdleWatcher | None = None
    server: uvicorn.Server | None = None
    stopped_for_idle: bool = False
    folder_lock: FolderLock | None = None

    def close(self) -> None:
        """Stop the jobs and let another app use the output folder."""
        self.jobs.shutdown()
        if self.folder_lock is not None:
            self.folder_lock.release()

    def uptime_seconds(self) -> float:
        return time.time() - self.started_at

    def stop_for_idle(self) -> None:
        self.stopped_for_idle = True
        if self.server is not None:
            self.server.should_exit = True


class _AllListeners(JobListener):
    """Tells every listener (metrics, idle watcher); one failing does not keep the news from the others."""

    def __init__(self, *listeners: JobListener):
        self.listeners = listeners

    def job_started(self, job_id: str) -> None:
        for listener in self.listeners:
            _tell(listener.job_started, job_id)

    def job_finished(self, job_id: str, state: str, **details) -> None:
        for listener in self.listeners:
            _tell(listener.job_finished, job_id, state, **details)


def _tell(method, *args, **kwargs) -> None:
    try:
        method(*args, **kwargs)
    except Exception:  # bookkeeping must never fail a job; the JobManager logs its listener's errors the same way
        log.exception("job listener %s failed", getattr(method, "__qualname__", method))


def choose_model(configured: str, monitor) -> str:
    """The configured model, else the real I2VGen-XL where an NVIDIA GPU is present and ``tiny`` otherwise."""
    if configured:
        return configured
    return DEFAULT_MODEL if monitor.snapshot().gpu_present else TINY


def create_app(settings: AppSettings, *, monitor=None, engine: Engine | None = None) -> StudioApp:
    monitor = monitor or GpuMonitor()
    monitor.warn_fraction = settings.warn_percent / 100  # the real monitor and the tests' fake alike
    model = choose_model(settings.model, monitor)
    # A bad --model or I2V_MODELS entry fails here, at start, with the loader's message.
    models = offered_models(model, settings.models)
    presets = load_presets()
    keywords = load_keyword_library()
    # The engine plans with the GPUs' free memory plus what the app's workers hold for their resident models (the job
    # runs in one of them, which reuses it). A lambda: the job manager is built below, from this engine.
    gpus = WorkersGpuView(monitor, workers=lambda: jobs.workers())
    engine = engine or Engine(gpu_info=gpus, output_dir=settings.outputs, presets=presets, keywords=keywords,
                              min_free_bytes=settings.min_free_mb * 2**20, speedups=settings.speedups())
    started_at = time.time()
    # The queue is read at scrape time, through a lambda because the manager needs its listener first.
    metrics = Metrics(monitor=monitor, queue_length=lambda: jobs.queue_length(), started_at=started_at,
                      workers=lambda: jobs.workers())
    # A lambda again: the watcher stops the StudioApp built below, and asks the manager whether it is busy.
    idle = IdleWatcher(settings.idle_stop_minutes, busy=lambda: jobs.queue_length() > 0 or bool(jobs.active()),
                       on_idle=lambda: studio_app.stop_for_idle())
    folder_lock = FolderLock(engine.output_dir).acquire()  # before recover(): it must not sweep a live app's jobs
    store = JobStore.in_folder(engine.output_dir)
    retention = RetentionListener(engine.output_dir, store, settings.retention_days)
    learned_seconds = functools.partial(expected_seconds, variant=step_times.speed_variant(engine.speedups))
    # One worker process per GPU (or --cpu-workers); without a GPU the app's own process runs the jobs.
    jobs = JobManager(engine, store, max_queue=settings.queue_size, shared_control=settings.shared_control,
                      listener=_AllListeners(metrics, idle, retention), expected_seconds=learned_seconds,
                      workers=build_workers(settings, engine, monitor), gpu_room=GpuRoom(monitor))
    for record in jobs.recover():
        log.warning("job %s (%s) did not finish before the last stop: shown as interrupted", record.id,
                    record.settings.get("prompt", "")[:60])
    prune_outputs(engine.output_dir, store, settings.retention_days)
    jobs.start()  # after recover(): the workers' processes import their libraries while the page comes up
    runs_on = _runs_on(monitor)
    studio = Studio(
        jobs, models=models, presets=presets, keywords=keywords,
        gpu_panel_html=(f'<div id="gpu-panel" data-poll-ms="{int(settings.poll_seconds * 1000)}" '
                        f'data-warn-percent="{settings.warn_percent}" '
                        f'data-runs-on="{html.escape(runs_on)}" data-state="loading">Reading GPU status…</div>'),
        runs_on=runs_on,
        expected_seconds=learned_seconds,
    )
    blocks = studio.build()
    blocks.queue(max_size=max(32, settings.queue_size * 4), default_concurrency_limit=None)

    api = FastAPI(title="I2V Studio", docs_url=None, redoc_url=None, openapi_url=None)

    @api.get("/gpu_status")
    def gpu_status() -> JSONResponse:
        """The monitor's snapshot (schema: README "GPU status"), plus the app's uptime and idle countdown for the
        page's footer line. Cached 0.5 s in the monitor."""
        status = monitor.snapshot().to_dict()
        status["node"] = socket.gethostname()
        status["nodes"] = jobs.node_gpus()  # with --executor ray: every box of the cluster, each with its GPUs
        seconds_left = idle.seconds_left()
        status["app"] = {"uptime_s": round(studio_app.uptime_seconds(), 1), "queue": jobs.queue_length(),
                         "idle_stop_after_s": idle.period if idle.enabled else None,
                         "idle_stop_in_s": None if seconds_left is None else round(seconds_left)}
        return JSONResponse(status, headers={"Cache-Control": "no-store"})

    @api.api_route("/healthz", methods=["GET", "HEAD"])  # uptime checks often probe with HEAD
    def healthz() -> JSONResponse:
        # "model": the configured one (the page's default); "resident_model": the one the workers hold now (the most
        # held; a job on another offered model replaces it on its worker), None before the first load;
        # "resident_models": each model held by some worker.
        held = jobs.resident_models()
        return JSONResponse({"ok": True, "model": model, "resident_model": held[0] if held else None,
                             "resident_models": held, "uptime_s": round(studio_app.uptime_seconds(), 1),
                             "queue": jobs.queue_length()},
                            headers={"Cache-Control": "no-store"})

    @api.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus text format (README "Access control and metrics")."""
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    add_job_routes(api, jobs)
    add_worker_routes(api, jobs)

    outputs = settings.outputs.resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    gr.mount_gradio_app(
        api, blocks, path="",
        allowed_paths=[str(outputs)],
        blocked_paths=[str(outputs / JOBS_DB), str(outputs / f"{JOBS_DB}-wal"), str(outputs / f"{JOBS_DB}-shm")],
        max_file_size=f"{settings.max_upload_mb}mb",
        footer_links=["api"],
        show_error=False,  # an unexpected exception's text (paths, library internals) stays in the log
        css=(STATIC / "studio.css").read_text(encoding="utf-8"),
        head="".join(f"<script>{(STATIC / name).read_text(encoding='utf-8')}</script>"
                     for name in ("gpu_panel.js", "progress.js")),
    )
    guard_files(api, blocks, outputs)  # inside auth: only the app's own files, inputs only from uploads
    plain_input_errors(blocks)
    if settings.auth is not None:
        # Outermost, so it guards the Gradio mount and our routes alike (only /healthz stays open).
        api.add_middleware(BasicAuthMiddleware, credentials=settings.auth)
        log.info("HTTP Basic auth on for user %r (every route but /healthz)", settings.auth.user)
    # Outermost of all: a rebound host name gets nothing, not even the login challenge.
    api.add_middleware(HostCheckMiddleware, names=allowed_host_names(settings.host, settings.allowed_hosts))
    studio_app = StudioApp(api, blocks, jobs, monitor, model, started_at, idle=idle, folder_lock=folder_lock)
    return studio_app


def _runs_on(monitor) -> str:
    snapshot = monitor.snapshot()
    if snapshot.gpu_present:
        names = ", ".join(gpu.name for gpu in snapshot.gpus)
        return f"the GPU ({names})"
    return "the CPU"


def expected_seconds(job, variant: str = "") -> float | None:
    """Denoising time learned from earlier jobs on this device (with the same speedups), or None before the first
    one."""
    params = job.params
    return step_times.estimate(cache_dir(), device_name=job.plan.gpu_name or "CPU", family=job.spec.family,
                               dtype=job.plan.dtype, width=params.width, height=params.height,
                               frames=params.frames, steps=params.steps, variant=variant)


class ServerThread:
    """Serve a ``StudioApp`` from a background thread until ``stop()``."""

    def __init__(self, app: StudioApp, host: str = "127.0.0.1", port: int = 7860):
        self.app = app
        self.url = f"http://{host}:{port}/"
        config = uvicorn.Config(app.fastapi, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)  # open browser tabs keep connections alive
        self.server = uvicorn.Server(config)
        app.server = self.server
        self.thread = threading.Thread(target=self.server.run, name="i2v-web", daemon=True)

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}")
            time.sleep(0.05)
        if self.app.idle is not None:
            self.app.idle.start()
        return self

    def stop(self) -> None:
        """Stop jobs and server; connections still open after the graceful period are closed by force."""
        if self.app.idle is not None:
            self.app.idle.stop()
        self.app.close()
        self.server.should_exit = True
        self.thread.join(3)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(10)
        if self.thread.is_alive():
            raise RuntimeError(f"the web server on {self.url} did not stop")
