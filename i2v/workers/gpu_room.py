"""``GpuRoom``: whether a worker's GPU has room for a job now. The GPU's free memory as NVML reports it (the
monitor's reading, numbered as nvidia-smi numbers the GPUs, as ``Worker.gpu_index`` is) is held against the job's
predicted peak with the planner's own safety margin (``MemoryPlanner.budget_of``), so a GPU passes exactly when the
planner would plan the job there unchanged. ``pool.choose_worker`` passes over a worker whose GPU has no room while
another's has."""
from __future__ import annotations

import socket
from typing import Protocol

from i2v.gpu.hardware import GpuInfo
from i2v.gpu.snapshot import Snapshot
from i2v.planning.planner import MemoryPlanner
from i2v.workers.worker import Worker


class Monitor(GpuInfo, Protocol):
    """``GpuMonitor`` (NVML, cached 0.5 s) or the tests' ``FakeGpuMonitor``: ``snapshot()`` numbers the GPUs as
    nvidia-smi does, whatever this process's CUDA_VISIBLE_DEVICES says."""

    def snapshot(self) -> Snapshot: ...


class GpuRoom:
    def __init__(self, monitor: Monitor, planner: MemoryPlanner | None = None):
        self.monitor = monitor
        self.node = socket.gethostname()  # the box whose GPUs the monitor reads
        # Only its margins are used: the app's engine plans with the same defaults.
        self.planner = planner or MemoryPlanner(monitor)

    def fits(self, worker: Worker, peak_bytes: int | None) -> bool:
        """False only when the worker's GPU is read and its plannable free memory is under ``peak_bytes``. A CPU
        worker, a job without a prediction (no memory model, a CPU plan), a worker on another box (its GPU numbers
        are that box's) and a GPU the monitor cannot read count as fitting: nothing says they do not."""
        index = worker.gpu_index
        if index is None or peak_bytes is None or worker.node != self.node:
            return True
        gpu = next((gpu for gpu in self.monitor.snapshot().gpus if gpu.index == index), None)
        return gpu is None or peak_bytes <= self.planner.budget_of(gpu.memory_free_bytes)
