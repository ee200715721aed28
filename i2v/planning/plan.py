"""How a request will be executed: device, precision, memory-saving switches.

The engine executes an ``ExecutionPlan``; a ``Planner`` makes it. ``BasicPlanner`` picks device and dtype only;
the memory planner (VRAM prediction, auto-downgrade) plugs in behind the same ``Planner`` interface.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Protocol

from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.gpu.hardware import GpuDevice, GpuInfo
from i2v.spec import ModelSpec

# Safer precision for a retry after NaN/Inf, by current dtype. fp16 overflows (max 65504); bf16 has fp32's range.
_SAFER = {"float16": ("bfloat16", "float32"), "bfloat16": ("float32",), "float32": ()}


@dataclass(frozen=True)
class ExecutionPlan:
    device: str  # "cpu" or "cuda:N"
    dtype: str  # "bfloat16" | "float16" | "float32"
    decode_chunk_size: int  # frames decoded by the VAE at once; the VAE is 2D, so this changes memory, not output
    vae_slicing: bool = False
    vae_tiling: bool = False
    # "none"; "model": one model on the GPU at a time (diffusers' model CPU offload); "group": every model's blocks
    # stream from pinned CPU RAM while it runs (diffusers' block-level group offload, CUDA streams)
    cpu_offload: str = "none"
    fp8_weights: bool = False  # the transformer's weights stored in float8 e4m3, computed in ``dtype``
    gpu_name: str | None = None

    def with_dtype(self, dtype: str) -> "ExecutionPlan":
        return replace(self, dtype=dtype)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlanDecision:
    plan: ExecutionPlan
    frames: int
    width: int
    height: int
    notices: tuple[Finding, ...] = ()
    estimate: object | None = None  # vram.VramEstimate when the planner predicts memory


class Planner(Protocol):
    """Everything the engine asks a planner (``tests/test_planner_contract.py`` runs each implementation through
    a real out-of-memory error in each phase)."""

    def plan(
        self, spec: ModelSpec, width: int, height: int, frames: int, *, device: str | None, dtype: str
    ) -> PlanDecision:
        """The plan for a request, before anything loads (may downgrade it, with notices, or refuse it)."""
        ...

    def next_down(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision, *,
                  phase: str | None = None) -> PlanDecision | None:
        """After a real out-of-memory error in ``phase`` ("generate" or "decode"): the plan to run the whole
        candidate again with, or None when no plan needs clearly less."""
        ...

    def smaller_decode(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision
                       ) -> PlanDecision | None:
        """After a real out-of-memory error in the VAE decode: a plan of the same shape whose decode needs clearly
        less (the finished latents are decoded again), or None."""
        ...


def choose_device(gpu_info: GpuInfo, requested: str | None) -> tuple[str, GpuDevice | None]:
    gpus = gpu_info.devices()
    if requested is None:
        return (gpus[0].torch_device, gpus[0]) if gpus else ("cpu", None)
    if requested == "cpu":
        return "cpu", None
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    for gpu in gpus:
        if gpu.index == index:
            return gpu.torch_device, gpu
    raise BadInputError(
        f"Device {requested} was requested but {'no CUDA GPU is available' if not gpus else 'it does not exist'}; "
        "use --device cpu or leave it unset."
    )


def choose_dtype(spec: ModelSpec, gpu: GpuDevice | None, requested: str) -> tuple[str, list[Finding]]:
    """bf16 where the GPU has it, fp16 where it must, fp32 on CPU; an explicit choice wins if the device can."""
    if requested != "auto":
        if requested == "bfloat16" and gpu is not None and not gpu.supports_bf16:
            raise BadInputError(f"{gpu.name} does not support bfloat16; use float16 or float32.")
        if requested == "float16" and gpu is None:
            raise BadInputError("float16 is not supported for CPU runs here; use float32 or bfloat16.")
        return requested, []
    if gpu is None:
        return "float32", []
    for dtype in spec.preferred_dtypes:
        if dtype == "bfloat16" and not gpu.supports_bf16:
            continue
        notices = []
        if dtype == "float16" and "bfloat16" in spec.preferred_dtypes:
            notices.append(
                Finding(
                    "dtype.fp16_fallback",
                    f"{gpu.name} has no bfloat16, so the model runs in float16; outputs are checked for NaN and "
                    "retried in float32 if needed.",
                )
            )
        return dtype, notices
    return "float32", []


def safer_dtypes(dtype: str, gpu: GpuDevice | None) -> tuple[str, ...]:
    """Precisions to retry in after NaN/Inf, best first, that the device supports."""
    return tuple(d for d in _SAFER[dtype] if not (d == "bfloat16" and gpu is not None and not gpu.supports_bf16))


class BasicPlanner:
    """Device and dtype only, no memory prediction: the seam the memory planner replaces."""

    def __init__(self, gpu_info: GpuInfo):
        self.gpu_info = gpu_info

    def plan(
        self, spec: ModelSpec, width: int, height: int, frames: int, *, device: str | None, dtype: str
    ) -> PlanDecision:
        device_name, gpu = choose_device(self.gpu_info, device)
        chosen_dtype, notices = choose_dtype(spec, gpu, dtype)
        # Decoding every frame at once is the classic OOM on GPUs; on CPU memory is plentiful and one call is fastest.
        chunk = frames if gpu is None else min(frames, 4)
        plan = ExecutionPlan(
            device=device_name,
            dtype=chosen_dtype,
            decode_chunk_size=chunk,
            gpu_name=gpu.name if gpu else None,
        )
        return PlanDecision(plan, frames, width, height, tuple(notices))

    # Without a memory model there is nothing to say that a smaller plan would fit: the run fails with the clear
    # out-of-memory message instead of guessing.
    def next_down(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision, *,
                  phase: str | None = None) -> PlanDecision | None:
        return None

    def smaller_decode(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision
                       ) -> PlanDecision | None:
        return None
