"""Out-of-memory errors and the device's memory figures, as the job run needs them (torch imported on use)."""
from __future__ import annotations

import resource


class OutOfMemoryDuring(Exception):
    """A real out-of-memory error, and the phase it happened in: "generate" (the denoising call with its encoders)
    or "decode" (the VAE decode). Only the first line of torch's message is kept: holding the original exception
    would pin the failed attempt's tensors through its traceback."""

    def __init__(self, phase: str, message: str):
        super().__init__(f"out of memory while {phase}: {message}")
        self.phase = phase
        self.message = message


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM error, and the allocation failures cuBLAS/cuDNN report as plain RuntimeErrors."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
    )


def first_line(exc: BaseException) -> str:
    """What an error says, in one line (torch's OOM message goes on with allocator advice)."""
    return (str(exc).splitlines() or [""])[0] or type(exc).__name__


def free_cached_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def held_gpu_bytes() -> int:
    """GPU memory this process's allocator holds now: its resident model and cached blocks, which its next job reuses
    (or frees first). 0 when this process has not used CUDA; torch is not imported for the answer."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return 0
    return sum(int(torch.cuda.memory_reserved(index)) for index in range(torch.cuda.device_count()))


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str) -> dict:
    usage = {"process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.startswith("cuda"):
        import torch

        usage["cuda_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
        usage["cuda_peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
    return usage
