"""Guards against the black video: NaN cast to uint8 becomes 0 silently, and ``clip`` keeps NaN. Every tensor is
checked before it is converted."""
from __future__ import annotations

import numpy as np

from i2v.errors import NonFiniteOutputError


def count_non_finite(tensor) -> int:
    import torch

    return int((~torch.isfinite(tensor)).sum().item())


def ensure_finite(tensor, what: str) -> None:
    bad = count_non_finite(tensor)
    if bad:
        raise NonFiniteOutputError(f"The {what} contain {bad} NaN/Inf values out of {tensor.numel()}.")


def video_to_uint8(video) -> np.ndarray:
    """(batch=1, channels, frames, height, width) in [-1, 1] → (frames, height, width, 3) uint8, NaN-checked."""
    import torch

    ensure_finite(video, "decoded frames")
    frames = (video[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)
    return (frames * 255).round().to(torch.uint8).cpu().numpy()


def audio_to_float32(waveform) -> np.ndarray:
    """(batch=1, channels, samples) in [-1, 1] → (channels, samples) float32, NaN-checked: a NaN sample would be
    written as silence or a click, so it fails like a black frame does."""
    ensure_finite(waveform, "decoded audio samples")
    return waveform[0].float().clamp(-1, 1).cpu().numpy()
