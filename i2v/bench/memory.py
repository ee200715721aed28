"""Peak GPU memory as NVML sees it, sampled while a run goes on (for ``python -m i2v bench``).

torch's ``max_memory_allocated`` counts only tensors from its caching allocator; NVML's "used" also holds the CUDA
context, cuDNN/cuBLAS workspaces and the allocator's cached blocks, which is what decides an OOM next to other
processes. NVML has no peak counter, so a thread samples the device every few milliseconds: a short spike between
two samples can be missed, so the figure is a lower bound on the true peak.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.005


class NvmlPeak:
    """Highest NVML "memory used" of the busiest GPU seen between ``start()`` and ``stop()``; ``bytes`` is None when
    NVML cannot be read (no GPU, no driver)."""

    def __init__(self, monitor=None, interval: float = SAMPLE_SECONDS) -> None:
        from i2v.gpu.monitor import GpuMonitor

        self._monitor = monitor or GpuMonitor(cache_seconds=0.0)
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bytes: int | None = None
        self.samples = 0

    def _sample(self) -> None:
        snapshot = self._monitor.snapshot()
        if not snapshot.gpus:
            return
        used = max(gpu.memory_used_bytes for gpu in snapshot.gpus)
        self.bytes = used if self.bytes is None else max(self.bytes, used)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> "NvmlPeak":
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="nvml-peak", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


class _NoPeak:
    bytes = None
    samples = 0


@contextlib.contextmanager
def nvml_peak_for(on_gpu: bool, monitor=None) -> Iterator[NvmlPeak | _NoPeak]:
    """Sample NVML around the block when the run is on a GPU; on CPU yield an object whose ``bytes`` is None."""
    if not on_gpu:
        yield _NoPeak()
        return
    peak = NvmlPeak(monitor).start()
    try:
        yield peak
    finally:
        peak.stop()
