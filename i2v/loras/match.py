"""Does a LoRA fit the model? Its keys, converted the way diffusers converts them (the pipeline's own
``lora_state_dict``: Kohya, Musubi, ComfyUI and original-repo layouts become diffusers' PEFT names), are compared
with the modules of the components the pipeline loads LoRAs into, shapes included. Nothing matches: refused before
the run, with the counts and the model family the keys look like. Some match: the run uses those, with a warning
giving the counts (diffusers would otherwise fail on the first mis-shaped layer, or skip unknown ones silently)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from i2v.errors import BadInputError
from i2v.findings import Finding

log = logging.getLogger(__name__)

LORA_KEY = re.compile(r"^(?P<component>[a-z_0-9]+)\.(?P<module>.+?)\.(?P<part>lora_A|lora_B)\.(?P<kind>weight|bias)$")
EXAMPLES = 3  # unmatched keys named in a message

# What a LoRA's original key names suggest it was trained for, first match wins (a hint in the refusal only).
LOOKS_LIKE = (
    (re.compile(r"lora_unet_(down|up|input|output)_blocks|(^|\.)(down_blocks|up_blocks|input_blocks)\."),
     "a UNet image model (Stable Diffusion 1.x / 2.x / XL)"),
    (re.compile(r"double_blocks|single_blocks|single_transformer_blocks"), "Flux or HunyuanVideo"),
    (re.compile(r"audio_(attn|ff|to_)|audio_attn|video_to_audio"), "LTX-2"),
    (re.compile(r"(^|[._])blocks[._]\d+[._](self_attn|cross_attn|attn1|attn2|ffn)"), "Wan 2.1 / 2.2"),
    (re.compile(r"transformer_blocks[._]\d+"), "a DiT with transformer_blocks (CogVideoX, LTX-Video, EasyAnimate …)"),
    (re.compile(r"lora_te\d?_|text_model\."), "a text encoder only"),
)


@dataclass(frozen=True)
class LoraFit:
    state_dict: dict  # the matching tensors, in diffusers' names, ready for ``load_lora_weights``
    matched: int  # tensors that fit a module of the model
    unmatched: int  # tensors that fit nothing (no such module, another shape, not a LoRA tensor)
    examples: tuple[str, ...]  # a few unmatched keys
    looks_like: str | None

    def warning(self, name: str) -> Finding | None:
        if not self.unmatched:
            return None
        return Finding("lora.partial", f"LoRA {name}: {self.matched} of {self.matched + self.unmatched} tensors fit "
                                       f"this model and were applied; {self.unmatched} did not "
                                       f"(e.g. {', '.join(self.examples)}){self._hint()}.")

    def _hint(self) -> str:
        return f"; its keys look like {self.looks_like}" if self.looks_like else ""


def looks_like(keys) -> str | None:
    joined = "\n".join(keys)
    return next((label for pattern, label in LOOKS_LIKE if pattern.search(joined)), None)


def fit_lora(pipe, raw: dict, name: str, family: str) -> LoraFit:
    """The part of ``raw`` (the file's tensors) that fits ``pipe``; refused when none does."""
    converted = _converted(pipe, raw, name)
    components = {prefix: getattr(pipe, prefix, None) for prefix in getattr(pipe, "_lora_loadable_modules", ())
                  if prefix != "transformer_2"}  # Wan 2.2's second expert takes the same "transformer." keys
    modules = {prefix: dict(c.named_modules()) for prefix, c in components.items() if c is not None}
    kept, unmatched = {}, []
    for key, tensor in converted.items():
        if _fits(key, tensor, modules):
            kept[key] = tensor
        else:
            unmatched.append(key)
    fit = LoraFit(kept, len(kept), len(unmatched), tuple(unmatched[:EXAMPLES]), looks_like(raw))
    if not kept:
        raise BadInputError(f"LoRA {name} does not fit {family}: 0 of {len(converted)} tensors match a layer of the "
                            f"model{fit._hint()}. Use a LoRA trained for {family}.")
    return fit


def _converted(pipe, raw: dict, name: str) -> dict:
    convert = getattr(pipe, "lora_state_dict", None)
    if convert is None:
        raise BadInputError(f"{type(pipe).__name__} does not take LoRAs.")
    try:
        converted = convert(dict(raw))
    except (ValueError, KeyError, IndexError, RuntimeError, AttributeError) as exc:
        # diffusers' converters fail on layouts made for other models: then no key is in this model's names, and
        # the counts (none fit) and the family the keys look like say what the user needs to know.
        log.info("LoRA %s: diffusers' conversion failed (%s: %s); matching its keys as they are",
                 name, type(exc).__name__, exc)
        return dict(raw)
    return converted[0] if isinstance(converted, tuple) else converted


def _fits(key: str, tensor, modules: dict[str, dict]) -> bool:
    parts = LORA_KEY.match(key)
    if parts is None or parts["component"] not in modules:
        return False
    module = modules[parts["component"]].get(parts["module"])
    if module is None:
        return False
    module = getattr(module, "base_layer", module)  # already wrapped by an earlier adapter
    size_in, size_out = _linear_sizes(module)
    if size_in is None:
        return False  # LoRAs on convolutions or embeddings are not among what video LoRAs train
    if parts["part"] == "lora_A":
        return tensor.ndim == 2 and tensor.shape[1] == size_in
    if parts["kind"] == "bias":
        return tensor.ndim == 1 and tensor.shape[0] == size_out
    return tensor.ndim == 2 and tensor.shape[0] == size_out


def _linear_sizes(module) -> tuple[int | None, int | None]:
    size_in, size_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if isinstance(size_in, int) and isinstance(size_out, int):
        return size_in, size_out  # nn.Linear, and diffusers' GGUF and fp8 linears
    return None, None
