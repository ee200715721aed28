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
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from i2v.gpu.hardware import GpuDevice

log = logging.getLogger(__name__)

WARNING_FRACTION = 0.80  # memory use at or above this -> warning level "warning"
CRITICAL_FRACTION = 0.95  # memory use at or above this -> warning level "critical"
INIT_RETRY_SECONDS = 30.0  # a failed nvmlInit is retried no more often than this (a driver may appear later)
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)  # Ampere and newer have native bfloat16

_LEVELS = ("ok", "warning", "critical")  # mildest first, so max() by index gives the worst


def warning_level(used_bytes: int, total_bytes: int, warn_fraction: float = WARNING_FRACTION) -> str:
    """"ok", "warning" or "critical" for a memory use; a GPU reporting no total is "ok" (nothing to judge).
    ``warn_fraction`` is the app's setting (I2V_WARN_PERCENT); "critical" stays at 95 % (or the warning level,
    if that is set higher)."""
    if total_bytes <= 0:
        return "ok"
    fraction = used_bytes / total_bytes
    if fraction >= max(CRITICAL_FRACTION, warn_fraction):
        return "critical"
    if fraction >= warn_fraction:
        return "warning"
    return "ok"


def worst_level(levels: Sequence[str]) -> str:
    return max(levels, key=_LEVELS.index, default="ok")


def supports_bf16(compute_capability: tuple[int, int] | None) -> bool | None:
    return None if compute_capability is None else tuple(compute_capability) >= BF16_MIN_COMPUTE_CAPABILITY


@dataclass(frozen=True)
class ProcessMemory:
    """One process with a compute context on a GPU. ``used_bytes`` is None where the driver does not say (Windows
    WDDM, some containers); ``name`` comes from /proc/<pid>/comm and is None when that is unreadable."""

    pid: int
    used_bytes: int | None
    name: str | None


@dataclass(frozen=True)
class GpuSnapshot:
    """One GPU at one moment. ``index`` is NVML's index (PCI bus order), which is not necessarily CUDA's ordinal;
    ``devices()`` does that translation. Every optional field is None when the GPU or driver cannot report it."""

    index: int
    name: str
    uuid: str | None
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    utilization_percent: int | None
    temperature_c: int | None
    power_draw_w: float | None
    power_limit_w: float | None
    compute_capability: tuple[int, int] | None
    supports_bf16: bool | None
    processes: tuple[ProcessMemory, ...]
    this_process_used_bytes: int | None
    warning_level: str

    @property
    def memory_used_fraction(self) -> float:
        return self.memory_used_bytes / self.memory_total_bytes if self.memory_total_bytes > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "memory_total_bytes": self.memory_total_bytes,
            "memory_used_bytes": self.memory_used_bytes,
            "memory_free_bytes": self.memory_free_bytes,
            "memory_used_fraction": self.memory_used_fraction,
            "utilization_percent": self.utilization_percent,
            "temperature_c": self.temperature_c,
            "power_draw_w": self.power_draw_w,
            "power_limit_w": self.power_limit_w,
            "compute_capability": list(self.compute_capability) if self.compute_capability else None,
            "supports_bf16": self.supports_bf16,
            "processes": [{"pid": p.pid, "used_bytes": p.used_bytes, "name": p.name} for p in self.processes],
            "this_process_used_bytes": self.this_process_used_bytes,
            "warning_level": self.warning_level,
        }


@dataclass(frozen=True)
class Snapshot:
    """The whole machine at one moment; ``to_dict()`` is the /gpu_status JSON payload.

    Keys of ``to_dict()``:

    - ``gpu_present`` (bool): at least one GPU could be read.
    - ``reason`` (str | null): why there is no GPU data (e.g. "NVML Shared Library Not Found: no NVIDIA driver on
      this machine"); null when GPUs are present.
    - ``gpus`` (list): one object per readable GPU, with keys ``index`` (NVML index), ``name``, ``uuid``,
      ``memory_total_bytes``, ``memory_used_bytes``, ``memory_free_bytes``, ``memory_used_fraction`` (0..1),
      ``utilization_percent`` (0..100), ``temperature_c``, ``power_draw_w``, ``power_limit_w`` (enforced limit),
      ``compute_capability`` ([major, minor]), ``supports_bf16``, ``processes`` (list of ``{pid, used_bytes,
      name}`` for compute processes on that GPU), ``this_process_used_bytes`` (this server's own use, from the
      process list) and ``warning_level``. Any of these except index, name and the memory figures may be null.
    - ``torch_allocated_bytes`` / ``torch_reserved_bytes`` (int | null): this process's PyTorch CUDA allocator,
      summed over devices; null unless torch is already imported and CUDA initialised.
    - ``system_ram_total_bytes`` / ``system_ram_available_bytes`` (int | null): from /proc/meminfo.
    - ``taken_at`` (float): Unix time of the reading.
    - ``warning_level`` ("ok" | "warning" | "critical"): the worst GPU's memory level, "ok" without a GPU.
      "warning" from 80 % of memory used, "critical" from 95 %.
    """

    gpu_present: bool
    reason: str | None
    gpus: tuple[GpuSnapshot, ...]
    torch_allocated_bytes: int | None
    torch_reserved_bytes: int | None
    system_ram_total_bytes: int | None
    system_ram_available_bytes: int | None
    taken_at: float
    warning_level: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_present": self.gpu_present,
            "reason": self.reason,
            "gpus": [gpu.to_dict() for gpu in self.gpus],
            "torch_allocated_bytes": self.torch_allocated_bytes,
            "torch_reserved_bytes": self.torch_reserved_bytes,
            "system_ram_total_bytes": self.system_ram_total_bytes,
            "system_ram_available_bytes": self.system_ram_available_bytes,
            "taken_at": self.taken_at,
            "warning_level": self.warning_level,
        }


# ---------------------------------------------------------------------------------------------------------------
# Reading the host: /proc and an already-running torch


def read_meminfo(path: str = "/proc/meminfo") -> tuple[int | None, int | None]:
    """(total, available) system RAM in bytes; None for what cannot be read (not Linux, old kernels)."""
    values: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
                    values[key] = int(parts[0]) * 1024  # /proc/meminfo says "kB" but means KiB
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("Cannot read %s: %s", path, exc)
    return values.get("MemTotal"), values.get("MemAvailable")


def process_name(pid: int) -> str | None:
    """The short command name of a process, or None (gone, another PID namespace, no permission)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def torch_memory() -> tuple[int | None, int | None]:
    """(allocated, reserved) bytes of this process's torch CUDA allocator, summed over devices.

    Only when the application has imported torch and initialised CUDA itself: importing torch costs seconds and
    initialising CUDA creates a context using hundreds of MiB of GPU memory, which a monitor must not cause."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None, None
    try:
        if not torch.cuda.is_initialized():
            return None, None
        # The allocator's statistics are plain counters; reading them for a device creates no context on it.
        count = torch.cuda.device_count()
        allocated = sum(int(torch.cuda.memory_allocated(i)) for i in range(count))
        reserved = sum(int(torch.cuda.memory_reserved(i)) for i in range(count))
        return allocated, reserved
    except (RuntimeError, AttributeError, AssertionError) as exc:  # half-initialised or unusual torch builds
        log.debug("Cannot read torch CUDA memory: %s", exc)
        return None, None


def _host_fields() -> dict[str, Any]:
    allocated, reserved = torch_memory()
    ram_total, ram_available = read_meminfo()
    return {
        "torch_allocated_bytes": allocated,
        "torch_reserved_bytes": reserved,
        "system_ram_total_bytes": ram_total,
        "system_ram_available_bytes": ram_available,
        "taken_at": time.time(),
    }


def _make_snapshot(gpus: Sequence[GpuSnapshot], reason: str | None, host: dict[str, Any]) -> Snapshot:
    return Snapshot(
        gpu_present=bool(gpus),
        reason=None if gpus else (reason or "No GPU found"),
        gpus=tuple(gpus),
        warning_level=worst_level([gpu.warning_level for gpu in gpus]),
        **host,
    )


# ---------------------------------------------------------------------------------------------------------------
# Mapping to the engine's GpuDevice


def _cuda_order(gpus: Sequence[GpuSnapshot], visible: str | None) -> list[GpuSnapshot]:
    """The GPUs in the order CUDA numbers them in this process, honouring CUDA_VISIBLE_DEVICES.

    NVML sees every GPU on the machine; CUDA only those listed in CUDA_VISIBLE_DEVICES, renumbered from 0 in list
    order, and (like CUDA) stops at the first entry that names no GPU. Entries may be NVML indices or UUID prefixes
    ("GPU-..."). Anything else (MIG instances) cannot be mapped here, so NVML order is kept with a warning."""
    if visible is None:
        return list(gpus)
    ordered: list[GpuSnapshot] = []
    for entry in (part.strip() for part in visible.split(",")):
        if entry.isdigit():
            match = next((gpu for gpu in gpus if gpu.index == int(entry)), None)
        elif entry.startswith("GPU-"):
            match = next((gpu for gpu in gpus if gpu.uuid and gpu.uuid.startswith(entry)), None)
        elif entry == "" or entry.startswith("-"):
            match = None  # "" hides every GPU and "-1" is the usual way to do so
        else:
            log.warning("CUDA_VISIBLE_DEVICES entry %r cannot be mapped to an NVML GPU; using NVML order", entry)
            return list(gpus)
        if match is None or match in ordered:
            break
        ordered.append(match)
    return ordered


def _to_devices(gpus: Sequence[GpuSnapshot]) -> list[GpuDevice]:
    """GpuDevices numbered 0.. in the order given (which must be CUDA's order)."""
    found = []
    for ordinal, gpu in enumerate(gpus):
        # An unknown compute capability is reported as (0, 0) without bf16: float16 with the engine's NaN checks is
        # the safe choice when the GPU's abilities are unknown.
        capability = gpu.compute_capability or (0, 0)
        found.append(GpuDevice(
            index=ordinal,
            name=gpu.name,
            total_bytes=gpu.memory_total_bytes,
            free_bytes=gpu.memory_free_bytes,
            compute_capability=capability,
            supports_bf16=bool(gpu.supports_bf16),
        ))
    return found


# ---------------------------------------------------------------------------------------------------------------
# The real monitor


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
                snap = _make_snapshot([], f"GPU monitor error: {type(exc).__name__}: {exc}", _host_fields())
            self._cached, self._cached_at = snap, now
            return snap

    def devices(self) -> list[GpuDevice]:
        """The ``hardware.GpuInfo`` protocol: usable CUDA devices with free memory (at most ``cache_seconds`` old),
        numbered as CUDA numbers them in this process. Empty without a GPU; never raises."""
        return _to_devices(_cuda_order(self.snapshot().gpus, os.environ.get("CUDA_VISIBLE_DEVICES")))

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
        host = _host_fields()
        if not self._ensure_initialised():
            return _make_snapshot([], self._init_failure, host)
        self._last_error = None
        count = self._call(None, "nvmlDeviceGetCount")
        if count is None:
            return _make_snapshot([], f"NVML is initialised but cannot count the GPUs{self._failure_hint()}", host)
        if count == 0:
            return _make_snapshot([], "The NVIDIA driver reports no GPUs", host)
        if any(index >= count for index in self._handles):  # a GPU went away: indices may have shifted
            self._handles.clear()
        gpus = [gpu for gpu in (self._read_gpu(index) for index in range(count)) if gpu is not None]
        if gpus:
            return _make_snapshot(gpus, None, host)
        return _make_snapshot([], f"The NVIDIA driver reports {count} GPU(s) but none could be read"
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


# ---------------------------------------------------------------------------------------------------------------
# The fake


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
        return _make_snapshot(gpus, self._reason, host)

    def devices(self) -> list[GpuDevice]:
        # Simulated GPUs are all "visible": CUDA_VISIBLE_DEVICES describes the real machine, not these.
        return _to_devices(self.snapshot().gpus)

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
