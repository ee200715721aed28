"""A GPU monitor with simulated GPUs, for tests and for trying the page without a GPU."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from i2v.gpu.hardware import GpuDevice
from i2v.gpu.snapshot import (WARNING_FRACTION, GpuSnapshot, ProcessMemory, Snapshot, make_snapshot, supports_bf16,
                              to_devices, warning_level)



@dataclass
class FakeGpu:
    """One simulated GPU for ``FakeGpuMonitor``. ``supports_bf16`` defaults from the compute capability."""

    name: str = "Fake GPU"
    total_bytes: int = 24 * 2**30
    used_bytes: int = 0
    utilization_percent: int | None = 0
    temperature_c: int | None = 40
    compute_capability: tuple[int, int] = (8, 9)
    supports_bf16: bool | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    processes: tuple[ProcessMemory, ...] = field(default_factory=tuple)


class FakeGpuMonitor:
    """For tests and the UI without a GPU: configurable GPUs (total/used memory, utilisation, temperature, bf16,
    compute capability); ``set_used(index, bytes)`` simulates load. Same ``snapshot()``/``devices()`` API as
    ``GpuMonitor``; nothing is cached, so a change shows at once. Host figures (torch, RAM) are None."""

    def __init__(self, gpus: Sequence[FakeGpu] = (), reason: str = "FakeGpuMonitor configured without GPUs") -> None:
        self._gpus = list(gpus)
        self._reason = reason
        self.warn_fraction = WARNING_FRACTION
        self._lock = threading.Lock()

    @classmethod
    def single(cls, *, total_gib: float = 24.0, used_gib: float = 0.0, **options: Any) -> "FakeGpuMonitor":
        return cls([FakeGpu(total_bytes=int(total_gib * 2**30), used_bytes=int(used_gib * 2**30), **options)])

    @classmethod
    def none(cls, reason: str = "FakeGpuMonitor configured without GPUs") -> "FakeGpuMonitor":
        return cls([], reason)

    def set_used(self, index: int, used_bytes: int) -> None:
        with self._lock:
            gpu = self._gpus[index]
            gpu.used_bytes = max(0, min(int(used_bytes), gpu.total_bytes))

    def snapshot(self) -> Snapshot:
        with self._lock:
            gpus = [self._gpu_snapshot(index, gpu, self.warn_fraction) for index, gpu in enumerate(self._gpus)]
        host = {
            "torch_allocated_bytes": None,
            "torch_reserved_bytes": None,
            "system_ram_total_bytes": None,
            "system_ram_available_bytes": None,
            "taken_at": time.time(),
        }
        return make_snapshot(gpus, self._reason, host)

    def host_memory(self) -> int | None:
        return None  # simulated GPUs on a real machine: its RAM says nothing about the simulated one

    def devices(self) -> list[GpuDevice]:
        return to_devices(self.visible(self.snapshot().gpus))

    def visible(self, gpus: Sequence[GpuSnapshot]) -> list[GpuSnapshot]:
        # Simulated GPUs are all "visible": CUDA_VISIBLE_DEVICES describes the real machine, not these.
        return list(gpus)

    def shutdown(self) -> None:
        """Nothing to release; present so the fake can stand in for ``GpuMonitor``."""

    @staticmethod
    def _gpu_snapshot(index: int, gpu: FakeGpu, warn_fraction: float) -> GpuSnapshot:
        bf16 = supports_bf16(gpu.compute_capability) if gpu.supports_bf16 is None else gpu.supports_bf16
        return GpuSnapshot(
            index=index,
            name=gpu.name,
            uuid=f"GPU-fake-{index}",
            memory_total_bytes=gpu.total_bytes,
            memory_used_bytes=gpu.used_bytes,
            memory_free_bytes=gpu.total_bytes - gpu.used_bytes,
            utilization_percent=gpu.utilization_percent,
            temperature_c=gpu.temperature_c,
            power_draw_w=gpu.power_draw_w,
            power_limit_w=gpu.power_limit_w,
            compute_capability=gpu.compute_capability,
            supports_bf16=bf16,
            processes=tuple(gpu.processes),
            this_process_used_bytes=None,
            warning_level=warning_level(gpu.used_bytes, gpu.total_bytes, warn_fraction),
        )
