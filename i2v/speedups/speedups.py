"""Speed optimisations for the denoiser, each one switchable on its own so its effect can be measured.

- **Step cache** (DeepCache, Ma et al. 2023, arXiv:2312.00858): the deep features of a UNet change slowly from one
  denoising step to the next, so on most UNet calls only the shallow branch runs (``conv_in``, ``transformer_in``,
  ``down_blocks[0]``, ``up_blocks[-1]``, the output convolution) and the deep features that feed the last up block
  are reused from the last full call. Per run: :func:`step_cache`.
- **Channels-last** memory format for the 2-D convolutions, **attention** processor choice and **torch.compile**:
  settings of the resident pipeline, :func:`apply_speedups` / :func:`revert_speedups`.

Nothing heavy is imported here: torch and diffusers are imported inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i2v.errors import BadInputError
from i2v.paths import cache_dir

log = logging.getLogger(__name__)

MAX_STEP_CACHE_INTERVAL = 10
ATTENTION_CHOICES = ("sdpa", "classic")
_ATTENTION_LABELS = {"sdpa": "SDPA attention", "classic": "classic attention"}

# Attributes set on the functions we install as a module's instance ``forward``, so that we recognise (and only ever
# remove) our own, and tell them apart from e.g. accelerate's offload hooks.
_STEP_CACHE_MARK = "_i2v_step_cache_wrapper"
_COMPILED_MARK = "_i2v_compiled_backend"
_INDUCTOR_CACHE_VAR = "TORCHINDUCTOR_CACHE_DIR"


# -- settings -------------------------------------------------------------------------------------------------
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
        parts.append(_ATTENTION_LABELS[self.attention])
        return ", ".join(parts)


def check_step_cache_interval(interval: object) -> int:
    """``interval`` if it is a whole number from 1 (off) to 10, else a BadInputError that says what to use."""
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= MAX_STEP_CACHE_INTERVAL:
        raise BadInputError(
            f"Step cache interval must be a whole number from 1 (off) to {MAX_STEP_CACHE_INTERVAL}, got {interval!r}. "
            "2 or 3 gives most of the speedup with little quality loss; larger values blur motion and detail."
        )
    return interval


# -- step cache -----------------------------------------------------------------------------------------------
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
    if any(_is_step_cache_wrapper(block.__dict__.get("forward")) for _, block in deep):
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


def _is_step_cache_wrapper(function: object) -> bool:
    return bool(getattr(function, _STEP_CACHE_MARK, False))


# -- resident pipeline settings -------------------------------------------------------------------------------
def apply_speedups(pipe, speedups: Speedups, *, compile_backend: str = "inductor") -> list[str]:
    """Put the resident pipeline's denoiser (``pipe.unet``, or ``pipe.transformer``) and VAE in the state
    ``speedups`` asks for; return one human note per change (empty when it was already so: calling it again is
    free). ``Speedups()`` restores the defaults, see :func:`revert_speedups`. ``step_cache_interval`` is per run
    (:func:`step_cache`) and ignored here. Call it between runs, not inside a :func:`step_cache` block.

    - channels-last: the 2-D convolution weights only. ``unet.to(memory_format=torch.channels_last)`` fails on
      I2VGen-XL ("required rank 4 tensor") because its temporal convolutions have 5-D weights; those stay as they
      are. On a GPU cuDNN then runs the spatial convolutions in NHWC; on a CPU it rarely helps.
    - attention: "sdpa" sets diffusers' ``AttnProcessor2_0`` (torch's scaled_dot_product_attention, which picks a
      flash or memory-efficient kernel on a GPU), "classic" its ``AttnProcessor`` (explicit matmul-softmax, more
      memory, kept to measure against), in the denoiser and the VAE. Layers with another processor type (e.g. a
      model-specific one) are left alone.
    - compile (regional compilation): the forward of each heavy child (``transformer_in``, the image-latent
      temporal encoder, every down/mid/up block; for a transformer, every transformer block) is replaced on the
      instance by ``torch.compile(forward)``, so ``pipe.unet`` stays the same module and the step cache's wrappers
      sit *outside* compiled code: they wrap the compiled forward, a cached call simply does not call it, and
      compiled code never sees the cache's Python state. (``unet.compile()`` of the whole UNet, or ``block.compile()``,
      which compiles ``Module._call_impl`` and so whatever ``forward`` the instance has, would put the wrappers, their
      flag and their dict of tensors inside the traced code.) On the tiny model this gives one graph per block,
      no graph break, and no recompilation when the step cache is switched on. The default mode is used on
      purpose: "reduce-overhead" (CUDA graphs) reuses output buffers on the next replay, which would overwrite the
      features the step cache keeps. The first run after compiling is slow (compilation: 12 s of tracing with the
      "eager" backend, ~2.5 min with inductor for the tiny model on one CPU thread); kernels are kept in
      :func:`compile_cache_dir` for the next app start. Turning compile off puts the eager forwards back at once;
      the compiled code stays in memory until the process ends (torch has no cheap way to drop it), and turning
      compile on again reuses it where its guards still hold.
    """
    denoiser = _denoiser(pipe)
    for module in denoiser.modules():
        if _is_step_cache_wrapper(module.__dict__.get("forward")):
            raise RuntimeError("Apply speedups between runs: a step cache is active on this pipeline's UNet.")
    notes = _set_memory_format(denoiser, speedups.channels_last)
    notes += _set_attention(pipe, speedups.attention)
    notes += _set_compile(denoiser, speedups.compile, compile_backend)
    for note in notes:
        log.info("speedups: %s", note)
    return notes


def revert_speedups(pipe) -> list[str]:
    """Back to the plain pipeline: SDPA attention, contiguous convolution weights, eager forwards."""
    return apply_speedups(pipe, Speedups())


def compile_cache_dir() -> Path:
    """Where torch.compile's inductor keeps compiled kernels: ``TORCHINDUCTOR_CACHE_DIR`` if the user set it, else
    ``<our cache>/torchinductor``, which is then set in the environment so that compiled kernels (and Triton's, which
    inductor keeps below it unless ``TRITON_CACHE_DIR`` says otherwise) are reused across app restarts instead of
    living in torch's default ``/tmp/torchinductor_<user>``, which a reboot may empty.

    Importing ``torch._dynamo`` (diffusers does, at import) already fills the variable in with that default, so a
    value equal to it counts as not set. Inductor reads the variable on every cache access, so calling this right
    before the first compilation is enough.
    """
    current = os.environ.get(_INDUCTOR_CACHE_VAR)
    if current and not _filled_in_by_torch(current):
        return Path(current)
    folder = cache_dir() / "torchinductor"
    os.environ[_INDUCTOR_CACHE_VAR] = str(folder)
    log.info("torch.compile kernels are cached in %s", folder)
    return folder


def _filled_in_by_torch(value: str) -> bool:
    utils = sys.modules.get("torch._inductor.runtime.cache_dir_utils")  # without torch loaded, only a user sets it
    return utils is not None and os.path.abspath(value) == os.path.abspath(utils.default_cache_dir())


def _denoiser(pipe):
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return module
    raise BadInputError(f"{type(pipe).__name__} has no UNet or transformer to speed up.")


def _set_memory_format(denoiser, channels_last: bool) -> list[str]:
    import torch

    target = torch.channels_last if channels_last else torch.contiguous_format
    convs = [m for m in denoiser.modules() if isinstance(m, torch.nn.Conv2d)]
    changed = sum(not conv.weight.is_contiguous(memory_format=target) for conv in convs)
    if not changed:
        return []
    for conv in convs:
        conv.to(memory_format=target)  # swaps .data in place: the same Parameter objects, as compiled code expects
    layout = "channels-last" if channels_last else "contiguous (default)"
    return [f"{len(convs)} 2-D convolutions switched to {layout} memory format"]


def _set_attention(pipe, attention: str) -> list[str]:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    wanted = AttnProcessor2_0 if attention == "sdpa" else AttnProcessor
    ours = (AttnProcessor, AttnProcessor2_0)
    notes = []
    for name in ("unet", "transformer", "vae"):
        model = getattr(pipe, name, None)
        processors = getattr(model, "attn_processors", None) if model is not None else None
        if not processors:
            continue
        others = sorted({type(p).__name__ for p in processors.values() if type(p) not in ours})
        if others:
            log.info("speedups: %s keeps its %s attention layers as they are", name, ", ".join(others))
        to_change = [key for key, p in processors.items() if type(p) in ours and type(p) is not wanted]
        if not to_change:
            continue
        processor = wanted()  # stateless: one instance can serve every layer
        model.set_attn_processor({key: processor if key in to_change else p for key, p in processors.items()})
        notes.append(f"{name}: {_ATTENTION_LABELS[attention]} ({wanted.__name__}) in {len(to_change)} layers")
    return notes


def _compile_regions(denoiser) -> list[tuple[str, Any]]:
    """The children compiled one by one (regional compilation); empty for a model we do not know how to split."""
    regions = [(name, getattr(denoiser, name)) for name in ("transformer_in", "image_latents_temporal_encoder")
               if getattr(denoiser, name, None) is not None]
    for list_name in ("down_blocks", "up_blocks", "transformer_blocks"):
        regions += [(f"{list_name}.{i}", block) for i, block in enumerate(getattr(denoiser, list_name, None) or ())]
    if getattr(denoiser, "mid_block", None) is not None:
        regions.append(("mid_block", denoiser.mid_block))
    return regions


def _set_compile(denoiser, compile_on: bool, backend: str) -> list[str]:
    regions = _compile_regions(denoiser)
    installed = [(name, m) for name, m in regions if getattr(m.__dict__.get("forward"), _COMPILED_MARK, None)]
    if not compile_on:
        for _name, module in installed:
            del module.forward  # the class's eager forward again
        return [f"torch.compile off: {len(installed)} blocks back to eager"] if installed else []
    if not regions:
        raise BadInputError(f"torch.compile is not supported for {type(denoiser).__name__} here: turn compile off.")
    wanted = [(name, m) for name, m in regions
              if getattr(m.__dict__.get("forward"), _COMPILED_MARK, None) != backend]
    if not wanted:
        return []
    import torch

    if backend == "inductor":
        compile_cache_dir()
    for name, module in wanted:
        current = module.__dict__.get("forward")
        if current is not None and not getattr(current, _COMPILED_MARK, None):
            raise RuntimeError(f"Cannot compile {name}: its forward is already replaced ({current!r}), e.g. by "
                               "sequential CPU offload, which torch.compile does not support.")
        module.__dict__.pop("forward", None)  # a compiled forward for another backend: compile the eager one
        compiled = torch.compile(module.forward, backend=backend)
        setattr(compiled, _COMPILED_MARK, backend)
        module.forward = compiled
    return [f"torch.compile ({backend}) on {len(wanted)} blocks; the first run compiles them and is slower"]
