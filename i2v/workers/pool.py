"""Which workers the app has (``build_workers``: one process per GPU, ``--cpu-workers N`` on the CPU, or the app's
own process) and which one takes a job (``choose_worker``)."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from i2v.errors import BadInputError
from i2v.workers.child import WorkerConfig
from i2v.workers.process import ProcessWorker
from i2v.workers.worker import InProcessWorker, Worker


class UnknownGpuError(BadInputError):
    """``--gpus`` names a GPU the machine does not have. Stops the app at start, naming the GPUs there are."""

    kind = "fatal"


def choose_worker(model: str, ready: Sequence[Worker], fits: Callable[[Worker], bool] | None = None
                  ) -> Worker | None:
    """The worker for a job of ``model``: a ready one that has the model resident (no load), else the one used
    least recently (its model is the least likely to be wanted again soon). ``fits``: whether a worker's GPU has
    room for the job's predicted peak now (``GpuRoom``); a worker without room is passed over while another has
    it. When none has, the same rule among them all: that worker's engine then fits the job to its GPU (a smaller
    plan), as it does for any job."""
    if not ready:
        return None
    roomy = [worker for worker in ready if fits is None or fits(worker)] or ready
    matching = [worker for worker in roomy if worker.resident_model == model]
    return min(matching or roomy, key=lambda worker: worker.last_used)


def build_workers(settings, engine, monitor) -> list[Worker]:
    """One worker process per chosen GPU; ``cpu_workers`` processes on the CPU instead when asked; without either
    (a box without a GPU, or ``--gpus none``), the app's own process runs one job at a time, as before workers
    existed. ``--executor ray``: one Ray actor per GPU of the cluster (``ray_cluster``)."""
    if settings.executor == "ray":
        from i2v.workers.ray_cluster import build_ray_workers  # Ray is optional: imported only when asked for

        return build_ray_workers(settings, engine)
    if settings.cpu_workers:
        threads = max(1, (os.cpu_count() or 1) // settings.cpu_workers)
        return [_process_worker(settings, engine, f"cpu{n}", None, threads) for n in range(settings.cpu_workers)]
    if settings.gpus is None:  # --gpus none: the tests that instrument the app's engine, debugging
        return [InProcessWorker(engine)]
    gpus = _chosen_gpus(settings.gpus, [gpu.index for gpu in monitor.snapshot().gpus])
    if not gpus:
        return [InProcessWorker(engine)]
    return [_process_worker(settings, engine, f"gpu{index}", index, None) for index in gpus]


def _chosen_gpus(wanted: tuple[int, ...], present: list[int]) -> list[int]:
    if not wanted:
        return present
    missing = [index for index in wanted if index not in present]
    if missing:
        there = ", ".join(map(str, present)) or "none"
        raise UnknownGpuError(f"--gpus names GPU {', '.join(map(str, missing))}, but this machine has GPU(s) "
                              f"{there} (as nvidia-smi numbers them). Fix --gpus / I2V_GPUS, or leave it empty "
                              "for every GPU.")
    return list(wanted)


def _process_worker(settings, engine, name: str, gpu: int | None, threads: int | None) -> ProcessWorker:
    config = WorkerConfig(name=name, gpu=gpu, output_dir=engine.output_dir, min_free_bytes=engine.min_free_bytes,
                          speedups=engine.speedups, presets=engine.presets, keywords=engine.keywords,
                          torch_threads=threads)
    return ProcessWorker(config, watchdog_s=settings.watchdog_minutes * 60)
