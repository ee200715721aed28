"""The GPUs' room for a job while the app's workers keep models resident.

A worker keeps its model in GPU memory between jobs, so NVML shows that memory taken. It is not someone else's: the
worker's next job reuses it (the same model) or frees it first (another model), and a job's predicted peak already
counts the weights. So wherever the app asks whether a job fits, what its own workers hold (``Worker.held_bytes``:
the allocator's reserve each reported after its last load or job) is added back to the GPU's free memory. Without
this, the second job on a 24 GB card holding a 20 GB model would look as if it had 4 GB, and be shrunk or refused.

- ``GpuRoom.fits(worker, peak)``: at dispatch, whether that worker's GPU has room for the job, counting that worker's
  memory (not another process's) as free. ``pool.choose_worker`` passes over a worker without room while another has.
- ``WorkersGpuView``: the ``GpuInfo`` the app's engine plans with (at submit and for the page's verdict): each GPU's
  free memory plus what the app's workers on this box hold there, since the job will run in one of them.

The workers say what they hold themselves rather than the app matching NVML's per-process list by PID: inside a
container NVML reports the host's PIDs, which match nothing. Both use the monitor's reading (numbered as nvidia-smi
numbers the GPUs, as ``Worker.gpu`` is) and the planner's own safety margin (``MemoryPlanner.budget_of``).
"""
from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Sequence
from typing import Protocol

from i2v.gpu.hardware import GpuDevice, GpuInfo
from i2v.gpu.snapshot import GpuSnapshot, Snapshot, to_devices
from i2v.planning.planner import MemoryPlanner
from i2v.workers.outcome import WorkerInfo
from i2v.workers.worker import Worker


class Monitor(GpuInfo, Protocol):
    """``GpuMonitor`` (NVML, cached 0.5 s) or the tests' ``FakeGpuMonitor``: ``snapshot()`` numbers the GPUs as
    nvidia-smi does; ``visible()`` keeps those this process's CUDA sees, in CUDA's order."""

    def snapshot(self) -> Snapshot: ...

    def visible(self, gpus: Sequence[GpuSnapshot]) -> list[GpuSnapshot]: ...


def with_reusable(gpu: GpuSnapshot, held_bytes: int) -> GpuSnapshot:
    """The GPU with ``held_bytes`` (memory the job's own worker holds) counted as free."""
    if held_bytes <= 0:
        return gpu
    free = min(gpu.memory_total_bytes, gpu.memory_free_bytes + held_bytes)
    return dataclasses.replace(gpu, memory_free_bytes=free, memory_used_bytes=gpu.memory_total_bytes - free)


class GpuRoom:
    def __init__(self, monitor: Monitor, planner: MemoryPlanner | None = None):
        self.monitor = monitor
        self.node = socket.gethostname()  # the box whose GPUs the monitor reads
        # Only its margins are used: the app's engine plans with the same defaults.
        self.planner = planner or MemoryPlanner(monitor)

    def fits(self, worker: Worker, peak_bytes: int | None) -> bool:
        """False only when the worker's GPU is read and its plannable free memory (with what the worker itself holds)
        is under ``peak_bytes``. A CPU worker, a job without a prediction (no memory model, a CPU plan), a worker on
        another box (its GPU numbers are that box's) and a GPU the monitor cannot read count as fitting: nothing
        says they do not."""
        index = worker.gpu_index
        if index is None or peak_bytes is None or worker.node != self.node:
            return True
        gpu = next((gpu for gpu in self.monitor.snapshot().gpus if gpu.index == index), None)
        if gpu is None:
            return True
        return peak_bytes <= self.planner.budget_of(with_reusable(gpu, worker.held_bytes).memory_free_bytes)


class WorkersGpuView:
    """The GPUs as the app's planner sees them: the monitor's, each with the memory the app's workers on this box hold
    there counted as free. ``workers``: the workers as ``JobManager.workers()`` lists them, read at each call."""

    def __init__(self, monitor: Monitor, workers: Callable[[], Sequence[WorkerInfo]]):
        self.monitor = monitor
        self.workers = workers
        self.node = socket.gethostname()

    def devices(self) -> list[GpuDevice]:
        held = self.held_per_gpu()
        gpus = [with_reusable(gpu, held.get(gpu.index, 0)) for gpu in self.monitor.snapshot().gpus]
        return to_devices(self.monitor.visible(gpus))

    def host_memory(self) -> int | None:
        return self.monitor.host_memory()

    def held_per_gpu(self) -> dict[int, int]:
        """nvidia-smi's GPU number → the bytes the app's workers on this box hold on it."""
        held: dict[int, int] = {}
        for info in self.workers():
            if info.node == self.node and info.gpu.isdigit() and info.held_bytes > 0:
                held[int(info.gpu)] = held.get(int(info.gpu), 0) + info.held_bytes
        return held
