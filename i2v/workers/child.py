"""The worker process: spawned by ``ProcessWorker``, it owns one ``Engine`` and its resident model and runs the
jobs the app sends it, one at a time.

Spawned, never forked: the child starts a fresh interpreter, so no CUDA state (nor a lock held by another thread)
comes over from the app. It sees only its own GPU (``CUDA_VISIBLE_DEVICES``, set before torch is imported, so it
calls it ``cuda:0``), or none for a CPU worker. It leads its own process group, so ending the worker by its PID
also ends an ffmpeg it started. It ends itself when the app goes away (the pipe closes, or its parent changes).

Messages to the app: ``("ready", pid)``, ``("resident", model, held GPU bytes)`` (after each load and job),
``("progress", ProgressEvent)`` (with its preview), ``("finished", RunOutcome)`` and ``("log", LogRecord)``. From
the app: ``("run", job_id, request)``, ``("load", request)``, ``("stop",)``; cancelling is a shared event, read at
every denoising step."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2v.workers.log_relay import portable

PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process needs to build its engine, as the app configured its own."""

    name: str
    gpu: int | None  # nvidia-smi's number; None: the CPU
    output_dir: Path
    min_free_bytes: int
    speedups: Any  # i2v.speedups.Speedups
    presets: Any  # dict[str, Preset] | None
    keywords: Any  # KeywordLibrary | None
    torch_threads: int | None  # CPU workers share the cores


class _Channel:
    """The pipe to the app, safe to send on from several threads (the job's and the log handler's)."""

    def __init__(self, conn):
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self._lock:
            self.conn.send(message)


class _ToApp(logging.Handler):
    """Log records go to the app, which writes them to its log with the job id and the worker's name."""

    def __init__(self, channel: _Channel, worker: str):
        super().__init__()
        self.channel = channel
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.channel.send(("log", portable(record, self.worker)))
        except (OSError, EOFError, ValueError):  # the app is gone; the process ends on its own right after
            pass


def _use_device(config: WorkerConfig) -> None:
    """Before torch is imported: only this worker's GPU, numbered as nvidia-smi numbers them."""
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if config.gpu is None else str(config.gpu)


def _end_with_parent(parent: int) -> None:
    """A worker must not outlive the app (``kill -9`` of the app leaves no one to stop it)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def serve(config: WorkerConfig, conn, cancel_event) -> None:
    """The worker process's main function."""
    _use_device(config)
    os.setpgrp()
    parent = os.getppid()
    threading.Thread(target=_end_with_parent, args=(parent,), name="i2v-parent-watch", daemon=True).start()
    channel = _Channel(conn)
    from i2v.logs import JobIdFilter

    root = logging.getLogger()
    root.handlers.clear()
    handler = _ToApp(channel, config.name)
    handler.addFilter(JobIdFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    from i2v.engine.engine import Engine
    from i2v.engine.progress import CancelToken

    engine = Engine(output_dir=config.output_dir, presets=config.presets, keywords=config.keywords,
                    min_free_bytes=config.min_free_bytes, speedups=config.speedups)
    channel.send(("ready", os.getpid()))
    _serve_messages(engine, conn, channel, CancelToken(cancel_event))


def _serve_messages(engine, conn, channel: _Channel, cancel) -> None:
    from i2v.engine.device_memory import held_gpu_bytes
    from i2v.errors import I2VError
    from i2v.logs import job_context
    from i2v.workers.outcome import run_job

    log = logging.getLogger(__name__)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the app closed the pipe: nothing more will come
            return
        if message[0] == "stop":
            return
        if message[0] == "load":
            try:
                engine.load(message[1])
            except I2VError as exc:
                log.error("the model could not be loaded yet: %s", exc)
        elif message[0] == "run":
            _, job_id, request = message
            with job_context(job_id):
                outcome = run_job(engine, request, job_id, lambda event: channel.send(("progress", event)), cancel)
            channel.send(("finished", outcome))
            if outcome.state == "lost":  # a broken CUDA context: only a new process helps
                os._exit(3)
        backend = engine.backend
        channel.send(("resident", backend.model_id if backend is not None else None, held_gpu_bytes()))
