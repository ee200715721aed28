"""The GPU as the engine sees it, behind a small interface with a fake for tests.

The live monitor (NVML: utilisation, temperature, other processes) is a separate service; this interface only
answers what the engine needs to choose a device, a dtype and (later) a memory plan. Nothing here touches CUDA
at import time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int]
    supports_bf16: bool

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}"


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


class GpuInfo(Protocol):
    def devices(self) -> list[GpuDevice]:
        """Every usable CUDA device, with free memory read now. Empty without a GPU; never raises."""
        ...

    def host_memory(self) -> int | None:
        """System RAM available now in bytes (where group offload keeps weights), None when unknown."""
        ...


class TorchCudaInfo:
    """The real implementation, through torch (imported on first use)."""

    def host_memory(self) -> int | None:
        return read_meminfo()[1]

    def devices(self) -> list[GpuDevice]:
        """Free memory counts what this process's allocator holds (``memory_reserved``: the resident model and its
        cached blocks) as free: the next job here reuses it (same model) or frees it first (another model), and its
        planned peak already includes the weights. ``mem_get_info`` alone would plan a second job as if the first
        job's model were someone else's and shrink or refuse it."""
        try:
            import torch
        except ImportError:  # the engine without torch cannot run anyway; say "no GPU" rather than crash
            return []
        try:
            if not torch.cuda.is_available():
                return []
            found = []
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                free, total = torch.cuda.mem_get_info(index)
                free = min(int(total), int(free) + int(torch.cuda.memory_reserved(index)))
                with torch.cuda.device(index):
                    bf16 = bool(torch.cuda.is_bf16_supported())
                found.append(GpuDevice(index, props.name, int(total), free, (props.major, props.minor), bf16))
            return found
        except RuntimeError as exc:  # driver present but unusable (e.g. busy, wrong version)
            log.warning("CUDA is present but not usable: %s", exc)
            return []


@dataclass
class FixedGpuInfo:
    """A given set of GPUs instead of the machine's: a card the user asks about ("what if I had 16 GiB":
    ``plan --gpu-memory``, the docs' VRAM tables) and the tests' GPUs."""

    gpus: list[GpuDevice]
    host_bytes: int | None = None  # the system RAM to plan with; None: unknown, not checked

    @classmethod
    def single(
        cls,
        *,
        name: str = "Fake GPU",
        total_gib: float = 24.0,
        free_gib: float | None = None,
        bf16: bool = True,
        compute_capability: tuple[int, int] = (8, 9),
        ram_gib: float | None = None,
    ) -> "FixedGpuInfo":
        free = total_gib if free_gib is None else free_gib
        host = None if ram_gib is None else int(ram_gib * 2**30)
        return cls([GpuDevice(0, name, int(total_gib * 2**30), int(free * 2**30), compute_capability, bf16)], host)

    def host_memory(self) -> int | None:
        return self.host_bytes

    @classmethod
    def none(cls) -> "FixedGpuInfo":
        return cls([])

    def devices(self) -> list[GpuDevice]:
        return list(self.gpus)
