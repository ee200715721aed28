"""What every memory prediction shares: the units, the allocator's slack and CUDA context, and the estimate.

A model's ``spec.memory`` is a ``MemoryProfile``: it predicts its own peak (``unet.UNetMemoryProfile`` for
I2VGen-XL, ``transformer.TransformerMemoryProfile`` for the diffusion transformers) and tells the planner how its
memory responds to fewer frames and to decode chunks. docs/VRAM.md derives the constants.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

GIB = 2**30
BYTES_PER_VALUE = {"bfloat16": 2, "float16": 2, "float32": 4}
ALLOCATOR_SLACK = 0.10  # fragmentation, cuDNN/cuBLAS workspaces: an estimate to calibrate on a GPU
CUDA_CONTEXT = int(0.5 * GIB)


@dataclass(frozen=True)
class VramEstimate:
    peak_bytes: int
    stage: str  # which stage sets the peak: "denoise" or "decode"
    weights_denoise_bytes: int
    unet_activation_bytes: int
    weights_decode_bytes: int
    decode_activation_bytes: int
    slack_bytes: int
    context_bytes: int

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def weights_by_stage(self) -> dict[str, int]:
        """Bytes of weights on the GPU in each stage."""
        return {"denoise": self.weights_denoise_bytes, "decode": self.weights_decode_bytes}

    def activations_by_stage(self) -> dict[str, int]:
        return {"denoise": self.unet_activation_bytes, "decode": self.decode_activation_bytes}

    def phase_bytes(self, phase: str) -> int:
        """Weights + activations of the stage of ``phase`` that needs the most: "decode" is the VAE decode,
        "generate" every stage before it (the denoising call, with its encoders). A run fails in one of the two
        phases, and a retry helps only if it needs less in that one."""
        weights, activations = self.weights_by_stage(), self.activations_by_stage()
        return max(weights[stage] + activations[stage] for stage in weights
                   if (stage == "decode") == (phase == "decode"))

    def to_dict(self) -> dict:
        return {**asdict(self), "peak_gib": round(self.peak_gib, 2)}


class MemoryProfile(Protocol):
    decodes_in_frame_chunks: bool  # False: the VAE takes the whole clip (causal 3-D VAE), only tiling applies
    streams_blocks: bool  # True: group offload and fp8 weights are rungs for it (``host_bytes`` then required)

    def frame_rungs(self, frames: int) -> tuple[int, ...]:
        """Fewer-frames counts the planner may fall back to, largest first (before the frame rule snaps them)."""
        ...

    def predict_peak(self, *, width: int, height: int, frames: int, dtype: str, decode_chunk_size: int = 1,
                     vae_tiling: bool = False, cpu_offload: str = "none", fp8_weights: bool = False,
                     guidance: bool = True) -> VramEstimate:
        """``cpu_offload``: "none" | "model" | "group"; ``fp8_weights``: the transformer's weights stored in fp8."""
        ...
