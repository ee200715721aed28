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

import logging
import os
import sys
from pathlib import Path
from typing import Any

from i2v.errors import BadInputError
from i2v.paths import cache_dir
from i2v.speedups.settings import ATTENTION_LABELS, Speedups
from i2v.speedups.unet_step_cache import is_step_cache_wrapper

log = logging.getLogger(__name__)

# Set on the compiled module's forward, so that we recognise (and only ever remove) our own.
_COMPILED_MARK = "_i2v_compiled_backend"
_INDUCTOR_CACHE_VAR = "TORCHINDUCTOR_CACHE_DIR"


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
    denoisers = _denoisers(pipe)
    for _name, denoiser in denoisers:
        for module in denoiser.modules():
            if is_step_cache_wrapper(module.__dict__.get("forward")):
                raise RuntimeError("Apply speedups between runs: a step cache is active on this pipeline's UNet.")
    notes = []
    for name, denoiser in denoisers:
        notes += _set_memory_format(denoiser, speedups.channels_last)
    notes += _set_attention(pipe, speedups.attention)
    for name, denoiser in denoisers:
        # Wan 2.2 A14B: both experts, each named in its note.
        label = f"{name}: " if len(denoisers) > 1 else ""
        notes += [label + note for note in _set_compile(denoiser, speedups.compile, compile_backend)]
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


def _denoisers(pipe) -> list[tuple[str, Any]]:
    """The UNet, or the transformer (and Wan 2.2 A14B's second expert, ``transformer_2``)."""
    found = [(name, getattr(pipe, name, None)) for name in ("unet", "transformer", "transformer_2")]
    found = [(name, module) for name, module in found if module is not None]
    if not found:
        raise BadInputError(f"{type(pipe).__name__} has no UNet or transformer to speed up.")
    return found[:1] if found[0][0] == "unet" else found


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
        notes.append(f"{name}: {ATTENTION_LABELS[attention]} ({wanted.__name__}) in {len(to_change)} layers")
    return notes


def _compile_regions(denoiser) -> list[tuple[str, Any]]:
    """The children compiled one by one (regional compilation); empty for a model we do not know how to split."""
    regions = [(name, getattr(denoiser, name)) for name in ("transformer_in", "image_latents_temporal_encoder")
               if getattr(denoiser, name, None) is not None]
    # The repeated blocks: a UNet's down/up blocks; a transformer's blocks (Wan's "blocks", the others'
    # "transformer_blocks"): one class each, so torch traces the code once and reuses it across the blocks.
    for list_name in ("down_blocks", "up_blocks", "transformer_blocks", "blocks"):
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
