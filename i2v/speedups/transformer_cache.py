"""The step cache of the transformer families, from diffusers' hooks: TaylorSeer (Liu et al. 2025,
arXiv:2503.06923; ``diffusers.TaylorSeerCacheConfig``). With interval N, the attention layers of every transformer
block compute on every N-th step and in between return a first-order Taylor prediction from their last two computed
outputs; the first steps always compute (the prediction needs them). The same ``step_cache_interval`` setting drives
I2VGen-XL's UNet cache (``unet_step_cache.py``), so "every N-th step" means the same whichever model runs.

Why TaylorSeer of the caches diffusers 0.42.1 has: First Block Cache needs at least two blocks and a threshold tuned
per model; MagCache needs magnitude ratios calibrated per checkpoint; FasterCache needs per-model attention
identifiers and guidance settings. TaylorSeer works on any transformer with diffusers' cache hooks (Wan 2.1 / 2.2,
CogVideoX, LTX-2: their pipelines keep a cache context per guidance branch) and its interval maps onto our setting.
EasyAnimate's transformer has no cache hooks in diffusers 0.42.1: the record says the cache did not run.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from i2v.speedups.settings import check_step_cache_interval

# The attention layers of every block (self, cross and LTX-2's audio ones). diffusers' default patterns end in
# "attn" (Flux's names) and match none of our models' "attn1"/"attn2": the cache would silently do nothing.
CACHED_LAYERS = r"(blocks|transformer_blocks)\.\d+\.[a-z_]*attn[a-z_0-9]*"
WARMUP_STEPS = 3  # full steps before the first prediction (diffusers' default): a first-order fit needs two points
METHOD = "TaylorSeer (diffusers hooks): the attention layers of every transformer block"


@dataclass
class TransformerCacheStats:
    interval: int
    denoisers: int = 0  # transformers the cache ran on (Wan 2.2 A14B: both experts)
    attention_calls: int = 0  # calls of the first block's self-attention, over all denoisers and guidance branches
    computed: int = 0  # … of which really computed (the rest were predicted)
    unsupported: str | None = None  # why the cache did not run on this model

    def to_dict(self) -> dict:
        if self.unsupported:
            return {"method": None, "interval": self.interval, "not_run": self.unsupported}
        return {"method": METHOD, "interval": self.interval, "denoisers": self.denoisers,
                "attention_calls": self.attention_calls, "computed": self.computed,
                "predicted": self.attention_calls - self.computed}


@dataclass
class _Counter:
    calls: int = 0
    computed: int = 0
    handles: list = field(default_factory=list)


def supports_transformer_cache(denoiser: object) -> bool:
    return callable(getattr(denoiser, "enable_cache", None)) and _first_attention(denoiser) is not None


@contextlib.contextmanager
def transformer_step_cache(pipe, interval: int) -> Iterator[TransformerCacheStats]:
    """TaylorSeer on the pipeline's transformer(s) for the ``with`` block; on exit (also on an error) the hooks are
    removed and the transformers are the plain ones again. ``interval`` 1 installs nothing."""
    check_step_cache_interval(interval)
    stats = TransformerCacheStats(interval)
    if interval == 1:
        yield stats
        return
    denoisers = [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None))
                 if m is not None]
    if not denoisers or not all(supports_transformer_cache(m) for m in denoisers):
        stats.unsupported = f"{type(denoisers[0] if denoisers else pipe).__name__} has no cache hooks in diffusers"
        yield stats
        return
    counters = []
    try:
        for denoiser in denoisers:
            denoiser.enable_cache(_config(interval))
            counters.append(_count(denoiser))
        stats.denoisers = len(denoisers)
        yield stats
    finally:
        for denoiser in denoisers:
            if getattr(denoiser, "is_cache_enabled", False):
                denoiser.disable_cache()
        for counter in counters:
            for handle in counter.handles:
                handle.remove()
            stats.attention_calls += counter.calls
            stats.computed += counter.computed


def _config(interval: int):
    import torch
    from diffusers import TaylorSeerCacheConfig

    # float32 factors: the prediction is a difference of two outputs, which bf16 would round away on small models.
    return TaylorSeerCacheConfig(cache_interval=interval, disable_cache_before_step=WARMUP_STEPS, max_order=1,
                                 taylor_factors_dtype=torch.float32, cache_identifiers=[CACHED_LAYERS])


def _first_attention(denoiser):
    blocks = getattr(denoiser, "blocks", None) or getattr(denoiser, "transformer_blocks", None)
    return getattr(blocks[0], "attn1", None) if blocks else None


def _count(denoiser) -> _Counter:
    """Counts the first block's self-attention calls (a hook around the module fires whether it computed or was
    predicted) and its real computations (its query projection runs only then)."""
    counter = _Counter()
    attention = _first_attention(denoiser)

    def called(*_):
        counter.calls += 1

    def computed(*_):
        counter.computed += 1

    counter.handles = [attention.register_forward_hook(called), attention.to_q.register_forward_hook(computed)]
    return counter
