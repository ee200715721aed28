"""``JobActor``: what runs inside a Ray actor, one per GPU of the cluster (``--executor ray``).

Like a worker process (``child.py``), it owns one ``Engine`` and keeps its model resident between jobs. The
difference: it may be on another box, with no folder in common with the app. So the picture travels with the job
(its bytes), the engine writes into a scratch folder of the actor's own, and the finished files (videos, their
records, posters) travel back as bytes, after which the actor deletes its copies. Ray makes it a threaded actor
(``ray_worker.py``), so ``poll`` and ``cancel`` are answered while a job runs; ``_busy`` keeps jobs and model loads
one at a time.

The app drives it by polling: ``start_job`` returns at once, ``poll`` hands over what happened since the last poll
(``("progress", ProgressEvent)``, ``("log", LogRecord)``, ``("file", relative path, bytes)``, and last
``("finished", RunOutcome, resident model, held GPU bytes)``). Polling, rather than a streaming generator, works the
same through Ray Client (``ray://``). This module does not import Ray: it is a plain class that ``ray_worker.py`` wraps.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import tempfile
import threading
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

from i2v.workers.child import WorkerConfig
from i2v.workers.log_relay import portable

log = logging.getLogger(__name__)

PICTURE_FIELDS = ("image", "last_image")  # the request's fields that name a picture file of the app's box


class _RelayToJob(logging.Handler):
    """While a job runs, the actor's log records go to the app with the job's messages (with its id); between jobs
    they go to the actor's stderr only, which Ray shows on the app's console."""

    def __init__(self, worker: str):
        super().__init__()
        self.worker = worker
        self.messages: queue.Queue | None = None

    def emit(self, record: logging.LogRecord) -> None:
        messages = self.messages
        if messages is not None:
            messages.put(("log", portable(record, self.worker)))


class JobActor:
    def __init__(self, config: WorkerConfig):
        self.scratch = Path(tempfile.mkdtemp(prefix=f"i2v-{config.name}-"))
        # Removed when the actor ends normally; one ended by ray.kill or a crash leaves it in the node's temp folder.
        weakref.finalize(self, shutil.rmtree, str(self.scratch), True)
        self.config = config
        self._relay = _RelayToJob(config.name)
        _log_to(self._relay)
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        from i2v.engine.engine import Engine

        self.engine = Engine(output_dir=self.scratch, presets=config.presets, keywords=config.keywords,
                             min_free_bytes=config.min_free_bytes, speedups=config.speedups)
        self._busy = threading.Lock()  # one job or model load at a time (Ray runs the actor's calls on threads)
        self._cancel = threading.Event()
        self._messages: queue.Queue = queue.Queue()
        self._job: threading.Thread | None = None

    def hello(self) -> dict[str, Any]:
        """Who and where it is: the app shows this in the workers list."""
        import ray

        return {"pid": os.getpid(), "node": socket.gethostname(), "gpus": [str(g) for g in ray.get_gpu_ids()],
                "scratch": str(self.scratch), "resident_model": self.resident_model()}

    def resident_model(self) -> str | None:
        backend = self.engine.backend
        return backend.model_id if backend is not None else None

    def resident(self) -> tuple[str | None, int]:
        """The resident model and the GPU memory this actor's process holds for it (reused by its next job)."""
        from i2v.engine.device_memory import held_gpu_bytes

        return self.resident_model(), held_gpu_bytes()

    def load(self, request) -> tuple[str | None, int]:
        """Load the request's model now (at the app's start, and after a restart); ``resident()`` after it."""
        from i2v.errors import I2VError

        with self._busy:
            try:
                self.engine.load(request)
            except I2VError as exc:
                log.error("the model could not be loaded yet: %s", exc)
        return self.resident()

    def start_job(self, job_id: str, request, pictures: dict[str, tuple[str, bytes]]) -> None:
        """Run the job on a thread of its own; its messages wait for ``poll``. ``pictures``: for each picture
        field of the request, its file name and bytes."""
        if self._job is not None and self._job.is_alive():
            raise RuntimeError(f"worker {self.config.name} is already running a job")
        self._cancel.clear()
        self._messages = queue.Queue()
        self._job = threading.Thread(target=self._run, args=(job_id, request, pictures, self._messages),
                                     name=f"i2v-job-{job_id}", daemon=True)
        self._job.start()

    def poll(self, wait_s: float) -> list[tuple]:
        """What happened since the last poll, waiting up to ``wait_s`` for the first message."""
        messages = self._messages
        try:
            found = [messages.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while True:
            try:
                found.append(messages.get_nowait())
            except queue.Empty:
                return found

    def cancel(self) -> None:
        self._cancel.set()

    def gpu_status(self) -> dict[str, Any]:
        """This box's GPUs as NVML sees them (every GPU of the node, not only this actor's), for ``/gpu_status``."""
        from i2v.gpu.monitor import GpuMonitor

        monitor = GpuMonitor()
        try:
            return {"node": socket.gethostname(), **monitor.snapshot().to_dict()}
        finally:
            monitor.shutdown()

    # -- the job's thread --------------------------------------------------------------------------------------
    def _run(self, job_id: str, request, pictures: dict[str, tuple[str, bytes]], messages: queue.Queue) -> None:
        from i2v.engine.progress import CancelToken
        from i2v.logs import job_context
        from i2v.workers.outcome import RunOutcome, run_job

        with self._busy, job_context(job_id):
            self._relay.messages = messages
            kept: list[Path] = []
            try:
                request = replace(request, **self._keep_pictures(pictures, kept))
                outcome = run_job(self.engine, request, job_id, lambda event: messages.put(("progress", event)),
                                  CancelToken(self._cancel))
                if outcome.state == "done":
                    kept += self._send_files(outcome.summary, messages)
            except Exception as exc:  # noqa: BLE001 - whatever breaks here, the app must hear how the job ended
                log.exception("the job could not be run on this actor")
                outcome = RunOutcome("failed", "internal", f"The Ray worker {self.config.name} could not run the "
                                     f"job ({type(exc).__name__}: {exc}); the app's log has details.")
            finally:
                self._relay.messages = None
                _delete(kept)
            messages.put(("finished", outcome, *self.resident()))

    def _keep_pictures(self, pictures: dict[str, tuple[str, bytes]], kept: list[Path]) -> dict[str, Path]:
        folder = self.scratch / "inputs"
        folder.mkdir(exist_ok=True)
        fields = {}
        for field, (name, data) in pictures.items():
            path = folder / Path(name).name
            path.write_bytes(data)
            kept.append(path)
            fields[field] = path
        return fields

    def _send_files(self, summary: dict, messages: queue.Queue) -> list[Path]:
        """Every file of the finished job, as a path relative to the scratch folder and its bytes."""
        sent = []
        for video in summary["videos"]:
            for key in ("path", "sidecar", "poster"):
                if video.get(key):
                    path = Path(video[key])
                    messages.put(("file", path.relative_to(self.scratch).as_posix(), path.read_bytes()))
                    sent.append(path)
        return sent


def _log_to(relay: logging.Handler) -> None:
    from i2v.logs import JobIdFilter

    root = logging.getLogger()
    relay.addFilter(JobIdFilter())
    root.addHandler(relay)
    root.setLevel(logging.INFO)


def _delete(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # the scratch folder is the actor's own; a leftover costs disk, not correctness
            log.warning("could not remove %s: %s", path, exc)
