"""Live GPU monitor: memory, utilisation, temperature, power and GPU processes, read through NVML.

This is the data behind the UI's /gpu_status endpoint. Browsers poll it often, so a snapshot is cached briefly and
reading it never raises: a machine without a GPU or driver gets ``gpu_present=False`` and a reason, and a GPU that
cannot report one figure (many consumer cards have no power reading) gets ``None`` for that figure only.

Nothing here touches NVML or CUDA at import time: pynvml is imported on the first snapshot, and torch is only looked
at if the application already imported it and initialised CUDA (the monitor must never create a CUDA context).

``GpuMonitor.devices()`` also answers the engine's ``hardware.GpuInfo`` protocol, so the planner can use the monitor.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

from i2v.gpu.hardware import GpuDevice
from i2v.gpu.snapshot import (INIT_RETRY_SECONDS, WARNING_FRACTION, GpuSnapshot, ProcessMemory, Snapshot,
                              cuda_order, host_fields, make_snapshot, process_name, supports_bf16, to_devices,
                              warning_level)

log = logging.getLogger(__name__)


def _import_pynvml() -> Any:
    import pynvml  # imported here, not at module level, so importing i2v.gpu.monitor never loads NVML

    return pynvml


def _decode(value: Any) -> str:
    # pynvml returned bytes before 11.x and str since; accept both.
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class GpuMonitor:
    """GPU status through NVML, cheap to poll.

    NVML is initialised once (lazily, on the first snapshot) and device handles are cached; the snapshot is cached
    for ``cache_seconds`` (default 0.5) so many browser tabs polling twice a second cost one NVML read. Thread-safe:
    a lock is held around the cache check and refresh, so concurrent callers share one read. ``snapshot()`` never
    raises: every NVML error becomes a missing (None) field or, if NVML itself is unavailable, ``gpu_present=False``
    with the reason. A failed nvmlInit is remembered and retried at most every 30 s, as a driver may appear.

    ``nvml`` is a module-like object for tests (it must provide ``NVMLError`` and the nvml* functions used); by
    default pynvml is imported on first use. ``clock`` drives the cache and the retry interval.

    Note: NVML reports host PIDs. Inside a container with its own PID namespace this server's PID is not in the
    list, so ``this_process_used_bytes`` is None there; ``torch_reserved_bytes`` is the in-process figure.
    """

    def __init__(
        self,
        cache_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        nvml: Any = None,
    ) -> None:
        self.cache_seconds = cache_seconds
        self.warn_fraction = WARNING_FRACTION
        self._clock = clock
        self._nvml = nvml
        self._lock = threading.Lock()
        self._initialised = False
        self._init_failed_at: float | None = None
        self._init_failure: str | None = None
        self._handles: dict[int, Any] = {}
        self._cached: Snapshot | None = None
        self._cached_at = 0.0
        self._warned: set[str] = set()
        self._last_error: str | None = None  # the latest failed NVML query of the current reading, for the reason

    # -- public API ------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached_at < self.cache_seconds:
                return self._cached
            try:
                snap = self._read()
            except Exception as exc:  # noqa: BLE001 - last resort: a status poll must never take the server down
                log.exception("GPU monitor failed unexpectedly")
                snap = make_snapshot([], f"GPU monitor error: {type(exc).__name__}: {exc}", host_fields())
            self._cached, self._cached_at = snap, now
            return snap

    def host_memory(self) -> int | None:
        return self.snapshot().system_ram_available_bytes

    def devices(self) -> list[GpuDevice]:
        """The ``hardware.GpuInfo`` protocol: usable CUDA devices with free memory (at most ``cache_seconds`` old),
        numbered as CUDA numbers them in this process. Empty without a GPU; never raises."""
        return to_devices(self.visible(self.snapshot().gpus))

    def visible(self, gpus: Sequence[GpuSnapshot]) -> list[GpuSnapshot]:
        """Those of ``gpus`` this process's CUDA sees, in CUDA's order (``CUDA_VISIBLE_DEVICES``)."""
        return cuda_order(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))

    def shutdown(self) -> None:
        """Release NVML if this monitor initialised it. A later snapshot() initialises it again."""
        with self._lock:
            if self._initialised:
                try:
                    self._nvml.nvmlShutdown()
                except self._errors() as exc:
                    log.warning("nvmlShutdown failed: %s", exc)
            self._initialised = False
            self._handles.clear()
            self._cached = None

    # -- NVML plumbing ---------------------------------------------------------------------------------------

    def _errors(self) -> tuple[type[BaseException], ...]:
        nvml_error = getattr(self._nvml, "NVMLError", None)
        errors: list[type[BaseException]] = [nvml_error] if isinstance(nvml_error, type) else []
        # pynvml raises this (not an NVMLError) when a versioned function is missing from an older driver.
        mismatch = getattr(self._nvml, "NVMLLibraryMismatchError", None)
        if isinstance(mismatch, type):
            errors.append(mismatch)
        return tuple(errors)

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        # Polled twice a second: the same problem is logged as a warning once, then only at debug level.
        if key in self._warned:
            log.debug(message, *args)
        else:
            self._warned.add(key)
            log.warning(message, *args)

    def _ensure_initialised(self) -> bool:
        """True when NVML is usable; otherwise the failure is in ``_init_failure``."""
        if self._initialised:
            return True
        now = self._clock()
        if self._init_failed_at is not None and now - self._init_failed_at < INIT_RETRY_SECONDS:
            return False
        if self._nvml is None:
            try:
                self._nvml = _import_pynvml()
            except ImportError as exc:
                return self._init_failed(now, f"pynvml (nvidia-ml-py) is not installed: {exc}")
        try:
            self._nvml.nvmlInit()
        except self._errors() as exc:
            return self._init_failed(now, self._describe_init_error(exc))
        self._initialised = True
        self._init_failed_at = self._init_failure = None
        log.info("NVML initialised")
        return True

    def _init_failed(self, now: float, reason: str) -> bool:
        first_time = self._init_failure != reason
        self._init_failed_at, self._init_failure = now, reason
        if first_time:  # no driver is the normal state of a CPU machine: say it once, quietly
            log.info("GPU monitor: %s (retrying at most every %.0f s)", reason, INIT_RETRY_SECONDS)
        return False

    def _describe_init_error(self, exc: BaseException) -> str:
        hints = (
            ("NVMLError_LibraryNotFound", "no NVIDIA driver on this machine"),
            ("NVMLError_DriverNotLoaded", "the NVIDIA kernel driver is not loaded"),
            ("NVMLError_NoPermission", "no permission to query the NVIDIA driver"),
            ("NVMLError_LibRmVersionMismatch", "the NVIDIA driver and library versions differ; a reboot may help"),
        )
        for class_name, hint in hints:
            cls = getattr(self._nvml, class_name, None)
            if isinstance(cls, type) and isinstance(exc, cls):
                return f"{exc}: {hint}"
        return f"NVML could not be initialised: {exc}"

    def _call(self, index: int | None, function: str, *args: Any) -> Any:
        """One NVML query; None (logged once) if the driver or binding cannot answer it."""
        fn = getattr(self._nvml, function, None)
        if fn is None:  # an old pynvml without this function
            self._warn_once(f"missing:{function}", "GPU monitor: this pynvml has no %s", function)
            return None
        try:
            return fn(*args)
        except self._errors() as exc:
            # NotSupported is normal for some figures on some GPUs: say it once, not twice a second.
            where = "" if index is None else f" for GPU {index}"
            self._warn_once(f"{function}:{index}:{type(exc).__name__}", "NVML %s failed%s: %s", function, where, exc)
            self._last_error = f"{function}: {exc}"
            return None

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            handle = self._call(index, "nvmlDeviceGetHandleByIndex", index)
            if handle is None:
                return None
            self._handles[index] = handle
        return self._handles[index]

    # -- one reading -----------------------------------------------------------------------------------------

    def _read(self) -> Snapshot:
        host = host_fields()
        if not self._ensure_initialised():
            return make_snapshot([], self._init_failure, host)
        self._last_error = None
        count = self._call(None, "nvmlDeviceGetCount")
        if count is None:
            return make_snapshot([], f"NVML is initialised but cannot count the GPUs{self._failure_hint()}", host)
        if count == 0:
            return make_snapshot([], "The NVIDIA driver reports no GPUs", host)
        if any(index >= count for index in self._handles):  # a GPU went away: indices may have shifted
            self._handles.clear()
        gpus = [gpu for gpu in (self._read_gpu(index) for index in range(count)) if gpu is not None]
        if gpus:
            return make_snapshot(gpus, None, host)
        return make_snapshot([], f"The NVIDIA driver reports {count} GPU(s) but none could be read"
                                  f"{self._failure_hint()}", host)

    def _failure_hint(self) -> str:
        """What failed and what to do, for a reason shown on the page (a GPU can fail mid-run: "GPU is lost")."""
        failed = f" ({self._last_error})" if self._last_error else ""
        return (f"{failed}. Check the GPU with nvidia-smi; this status comes back by itself when the driver answers "
                "again")

    def _read_gpu(self, index: int) -> GpuSnapshot | None:
        handle = self._handle(index)
        if handle is None:
            return None  # already logged by _call
        memory = self._call(index, "nvmlDeviceGetMemoryInfo", handle)
        if memory is None:
            # Memory is what the UI and planner need; a GPU without it is left out rather than shown as empty.
            self._warn_once(f"skip:{index}", "GPU %d: no memory information, leaving it out of the snapshot", index)
            self._handles.pop(index, None)  # a lost GPU may come back under a new handle
            return None
        name = self._call(index, "nvmlDeviceGetName", handle)
        uuid = self._call(index, "nvmlDeviceGetUUID", handle)
        utilization = self._call(index, "nvmlDeviceGetUtilizationRates", handle)
        temperature = self._call(index, "nvmlDeviceGetTemperature", handle,
                                 getattr(self._nvml, "NVML_TEMPERATURE_GPU", 0))
        power = self._call(index, "nvmlDeviceGetPowerUsage", handle)
        limit = self._call(index, "nvmlDeviceGetEnforcedPowerLimit", handle)
        capability = self._call(index, "nvmlDeviceGetCudaComputeCapability", handle)
        capability = (int(capability[0]), int(capability[1])) if capability is not None else None
        processes = self._processes(index, handle)
        own_pid = os.getpid()
        used, total = int(memory.used), int(memory.total)
        return GpuSnapshot(
            index=index,
            name=_decode(name) if name is not None else f"GPU {index}",
            uuid=_decode(uuid) if uuid is not None else None,
            memory_total_bytes=total,
            memory_used_bytes=used,
            memory_free_bytes=int(memory.free),
            utilization_percent=int(utilization.gpu) if utilization is not None else None,
            temperature_c=int(temperature) if temperature is not None else None,
            power_draw_w=power / 1000.0 if power is not None else None,  # NVML reports milliwatts
            power_limit_w=limit / 1000.0 if limit is not None else None,
            compute_capability=capability,
            supports_bf16=supports_bf16(capability),
            processes=processes,
            this_process_used_bytes=next((p.used_bytes for p in processes if p.pid == own_pid), None),
            warning_level=warning_level(used, total, self.warn_fraction),
        )

    def _processes(self, index: int, handle: Any) -> tuple[ProcessMemory, ...]:
        running = self._call(index, "nvmlDeviceGetComputeRunningProcesses", handle)
        if running is None:
            return ()
        found = []
        for proc in running:
            used = getattr(proc, "usedGpuMemory", None)  # None where the driver cannot attribute memory
            found.append(ProcessMemory(int(proc.pid), int(used) if used is not None else None, process_name(proc.pid)))
        return tuple(found)
