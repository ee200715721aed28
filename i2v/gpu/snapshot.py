"""What a GPU status reading is (``Snapshot``, ``GpuSnapshot``), the warning levels, the host figures (torch
memory, system RAM) and the mapping of NVML's GPUs to CUDA's numbering (``GpuDevice``). Shared by the NVML
monitor and the fake one."""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from i2v.gpu.hardware import GpuDevice, read_meminfo

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


def host_fields() -> dict[str, Any]:
    allocated, reserved = torch_memory()
    ram_total, ram_available = read_meminfo()
    return {
        "torch_allocated_bytes": allocated,
        "torch_reserved_bytes": reserved,
        "system_ram_total_bytes": ram_total,
        "system_ram_available_bytes": ram_available,
        "taken_at": time.time(),
    }


def make_snapshot(gpus: Sequence[GpuSnapshot], reason: str | None, host: dict[str, Any]) -> Snapshot:
    return Snapshot(
        gpu_present=bool(gpus),
        reason=None if gpus else (reason or "No GPU found"),
        gpus=tuple(gpus),
        warning_level=worst_level([gpu.warning_level for gpu in gpus]),
        **host,
    )


# ---------------------------------------------------------------------------------------------------------------
# Mapping to the engine's GpuDevice


def cuda_order(gpus: Sequence[GpuSnapshot], visible: str | None) -> list[GpuSnapshot]:
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


def to_devices(gpus: Sequence[GpuSnapshot]) -> list[GpuDevice]:
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
