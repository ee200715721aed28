"""The speedup settings (``Speedups``): what the engine asks the resident pipeline to use. Applying them is
``pipeline.py``; I2VGen-XL's step cache is ``unet_step_cache.py``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from i2v.errors import BadInputError

MAX_STEP_CACHE_INTERVAL = 10
ATTENTION_CHOICES = ("sdpa", "classic")
ATTENTION_LABELS = {"sdpa": "SDPA attention", "classic": "classic attention"}


@dataclass(frozen=True)
class Speedups:
    """Which speedups a run uses. The defaults are the plain pipeline (diffusers' own SDPA attention).

    ``step_cache_interval`` N > 1 computes the deep part of the UNet on every N-th UNet call only (one call per
    denoising step: the classifier-free-guidance batch of 2 is a single call). It is applied per run with
    :func:`step_cache`; the other three are settings of the resident pipeline, applied with :func:`apply_speedups`.
    """

    step_cache_interval: int = 1
    channels_last: bool = False
    compile: bool = False
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        check_step_cache_interval(self.step_cache_interval)
        for name in ("channels_last", "compile"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise BadInputError(f"Speedup '{name}' must be true or false, got {value!r}.")
        if self.attention not in ATTENTION_CHOICES:
            raise BadInputError(
                f"Unknown attention {self.attention!r}: choose 'sdpa' (the default: torch's scaled_dot_product_"
                "attention, fastest) or 'classic' (explicit matmul-softmax, to compare against)."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Speedups":
        """The inverse of :meth:`to_dict`; unknown keys are refused (a typo would otherwise be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"Unknown speedup setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """Short human text, e.g. "step cache every 3 steps, channels-last, torch.compile, SDPA attention"."""
        parts = []
        if self.step_cache_interval > 1:
            parts.append(f"step cache every {self.step_cache_interval} steps")
        if self.channels_last:
            parts.append("channels-last")
        if self.compile:
            parts.append("torch.compile")
        parts.append(ATTENTION_LABELS[self.attention])
        return ", ".join(parts)


def check_step_cache_interval(interval: object) -> int:
    """``interval`` if it is a whole number from 1 (off) to 10, else a BadInputError that says what to use."""
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= MAX_STEP_CACHE_INTERVAL:
        raise BadInputError(
            f"Step cache interval must be a whole number from 1 (off) to {MAX_STEP_CACHE_INTERVAL}, got {interval!r}. "
            "2 or 3 gives most of the speedup with little quality loss; larger values blur motion and detail."
        )
    return interval
