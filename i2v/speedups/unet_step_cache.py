"""Step cache for UNet denoisers (DeepCache, Ma et al. 2023, arXiv:2312.00858): the deep features of a UNet change
slowly from one denoising step to the next, so on most UNet calls only the shallow branch runs (``conv_in``,
``transformer_in``, ``down_blocks[0]``, ``up_blocks[-1]``, the output convolution) and the deep features that feed the
last up block are reused from the last full call. Per run: :func:`step_cache`. Nothing heavy is imported here."""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from i2v.errors import BadInputError
from i2v.speedups.settings import check_step_cache_interval

log = logging.getLogger(__name__)

# Set on the functions we install as a module's instance ``forward``, so that we recognise (and only ever remove)
# our own, and tell them apart from e.g. accelerate's offload hooks.
_STEP_CACHE_MARK = "_i2v_step_cache_wrapper"


@dataclass
class StepCacheStats:
    """What :func:`step_cache` did: UNet calls computed in full and from the cache, and denoising runs seen."""

    interval: int
    full_calls: int = 0
    cached_calls: int = 0
    runs: int = 0

    @property
    def calls(self) -> int:
        return self.full_calls + self.cached_calls

    def to_dict(self) -> dict[str, int]:
        return {"interval": self.interval, "full_calls": self.full_calls, "cached_calls": self.cached_calls,
                "runs": self.runs}


class _StepCacheState:
    """Shared by the UNet hooks (which decide, once per UNet call, full or cached) and the block wrappers (which
    obey). Deciding per call rather than per block keeps the deep blocks of one call consistent with each other."""

    def __init__(self, stats: StepCacheStats) -> None:
        self.stats = stats
        self.cached = False  # the current UNet call reuses the deep features
        self.valid = False  # the remembered outputs come from a full call that finished
        self.calls_in_run = 0
        self.last_timestep: float | None = None
        self.signature: tuple | None = None  # shape, dtype, device of the latents of the last call
        self.outputs: dict[str, tuple[tuple[int, ...] | None, Any]] = {}

    def clear(self) -> None:
        self.outputs.clear()
        self.valid = False
        self.cached = False


def supports_step_cache(unet: object) -> bool:
    """Whether :func:`step_cache` can work on ``unet`` (I2VGen-XL's UNet; not a transformer like CogVideoX's)."""
    try:
        _deep_blocks(unet)
    except BadInputError:
        return False
    return True


@contextlib.contextmanager
def step_cache(unet, interval: int) -> Iterator[StepCacheStats]:
    """DeepCache-style step caching on ``unet`` (an ``I2VGenXLUNet``) for the duration of the ``with`` block.

    Inside, the pipeline is called as usual. A UNet call is *full* (every block runs and the outputs of the deep
    blocks, ``down_blocks[1:]``, ``mid_block`` and ``up_blocks[:-1]``, are remembered) when it is the first of a
    run or the interval-th since the last full one; otherwise it is *cached*: the deep blocks return what they
    returned on the last full call without computing, and only the shallow branch runs on the fresh latents. The
    only remembered output that matters is ``up_blocks[-2]``'s (the deep features entering the last up block);
    the others just keep the shapes the UNet's forward expects. ``interval`` 1 is a no-op: nothing is installed
    and the stats stay zero.

    A new run is recognised by the timestep not going down (or the latents' shape/dtype/device changing), so
    features never leak from one run into the next even inside one ``with`` block, and a full call that failed
    half-way is never reused. On exit (also on an exception) every hook, wrapper and remembered tensor is
    removed: the UNet is exactly the plain one again. The remembered tensors are dropped at the start of each full
    call, so the peak memory of a full call is the plain one; between calls they hold about what one full call
    holds at its peak anyway.

    Composes with :func:`apply_speedups` ``compile``: the wrappers go around the compiled block forwards, so they
    run as plain Python and a cached call never enters compiled code for a deep block.
    """
    check_step_cache_interval(interval)
    stats = StepCacheStats(interval=interval)
    if interval == 1:
        yield stats
        return
    deep = _deep_blocks(unet)
    if any(is_step_cache_wrapper(block.__dict__.get("forward")) for _, block in deep):
        raise RuntimeError("A step cache is already active on this UNet; nested step caches are not supported.")
    state = _StepCacheState(stats)
    undo: list[Callable[[], None]] = []
    try:
        undo.append(unet.register_forward_pre_hook(_before_call_hook(state, interval), with_kwargs=True).remove)
        undo.append(unet.register_forward_hook(_after_call_hook(state)).remove)
        for name, block in deep:
            undo.append(_install_cache_wrapper(block, name, state))
        yield stats
    finally:
        for remove in reversed(undo):
            remove()
        state.clear()
        log.info("step cache every %d calls: %d full, %d cached UNet calls in %d run(s)", interval,
                 stats.full_calls, stats.cached_calls, stats.runs)


def _deep_blocks(unet: object) -> list[tuple[str, Any]]:
    """The blocks a cached call skips, with their names. Refuses anything that is not laid out like a diffusers
    UNet whose last up block takes its skip connections from the shallow branch only (else cached calls would
    feed it stale deep features)."""
    down, up, mid = (getattr(unet, name, None) for name in ("down_blocks", "up_blocks", "mid_block"))
    kind = type(unet).__name__
    if down is None or up is None or mid is None or len(down) < 2 or len(up) < 2:
        raise BadInputError(
            f"Step caching needs a UNet with down, mid and up blocks (I2VGen-XL); this model's {kind} has none. "
            "Set the step cache interval to 1 for this model."
        )
    first_down = down[0]
    shallow_skips = 1 + len(getattr(first_down, "resnets", ())) + len(getattr(first_down, "downsamplers", None) or ())
    last_up_skips = len(getattr(up[-1], "resnets", ()))
    if not 0 < last_up_skips <= shallow_skips:
        raise BadInputError(
            f"Step caching does not fit this {kind}: its last up block takes {last_up_skips} skip connections, the "
            f"shallow branch makes {shallow_skips}. Set the step cache interval to 1 for this model."
        )
    blocks = [(f"down_blocks.{i}", block) for i, block in enumerate(down) if i > 0]
    blocks.append(("mid_block", mid))
    blocks += [(f"up_blocks.{i}", block) for i, block in enumerate(up) if i < len(up) - 1]
    return blocks


def _timestep_value(timestep: object) -> float | None:
    # A GPU tensor costs one tiny device sync per UNet call, negligible next to the call itself.
    if timestep is None:
        return None
    if hasattr(timestep, "reshape"):
        flat = timestep.reshape(-1)
        return float(flat[0]) if flat.numel() else None
    return float(timestep)


def _before_call_hook(state: _StepCacheState, interval: int):
    def before_unet_call(_module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs.get("sample")
        timestep = _timestep_value(args[1] if len(args) > 1 else kwargs.get("timestep"))
        signature = (tuple(sample.shape), sample.dtype, sample.device) if hasattr(sample, "shape") else None
        new_run = (timestep is None or state.last_timestep is None or timestep >= state.last_timestep
                   or signature != state.signature)
        if new_run:
            state.calls_in_run = 0
            state.stats.runs += 1
        if state.valid and state.calls_in_run % interval != 0:
            state.cached = True
            state.stats.cached_calls += 1
        else:
            state.clear()  # before computing, so old and new deep features never coexist in memory
            state.stats.full_calls += 1
        state.calls_in_run += 1
        state.last_timestep = timestep
        state.signature = signature

    return before_unet_call


def _after_call_hook(state: _StepCacheState):
    def after_unet_call(_module, _args: tuple, _output) -> None:
        # Not called when the forward raised: a half-finished full call leaves the cache invalid.
        if not state.cached:
            state.valid = True

    return after_unet_call


def _first_tensor_shape(args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    candidates = list(args) + [kwargs.get("hidden_states")]
    for value in candidates:
        if hasattr(value, "shape"):
            return tuple(value.shape)
    return None


def _install_cache_wrapper(block, name: str, state: _StepCacheState) -> Callable[[], None]:
    """Replace ``block.forward`` on this instance; return the function that puts back exactly what was there (the
    class's method, or an instance attribute such as our compiled forward)."""
    missing = object()
    previous = block.__dict__.get("forward", missing)
    original = block.forward

    @functools.wraps(original)
    def forward(*args, **kwargs):
        shape = _first_tensor_shape(args, kwargs)
        if state.cached:
            remembered_shape, output = state.outputs.get(name, (None, None))
            if output is None or remembered_shape != shape:
                raise RuntimeError(
                    f"step cache: {name} got input of shape {shape} on a cached call, {remembered_shape} on the "
                    "last full call. Turn the step cache off (interval 1) for this model."
                )
            return output
        output = original(*args, **kwargs)
        state.outputs[name] = (shape, output)
        return output

    setattr(forward, _STEP_CACHE_MARK, True)
    block.forward = forward

    def restore() -> None:
        if block.__dict__.get("forward") is not forward:
            log.warning("step cache: %s.forward was replaced while the cache was active; putting back the original",
                        name)
        if previous is missing:
            block.__dict__.pop("forward", None)
        else:
            block.forward = previous

    return restore


def is_step_cache_wrapper(function: object) -> bool:
    return bool(getattr(function, _STEP_CACHE_MARK, False))
