"""A random-weight LoRA written for a loaded transformer, so the bench (``python -m i2v bench``) can measure what a
LoRA costs per step on any model, the full-size random-weight ones included, without downloading one. It covers every
linear layer of every block's attention (self, cross, image and audio attention: what style and distillation LoRAs
train) in diffusers' PEFT names (``transformer.<module>.lora_A.weight`` / ``lora_B.weight``, what
``save_lora_weights`` writes), so the engine loads it like any user's LoRA. Its frames are not meant to look like
anything: the weights are random, their size is a trained LoRA's."""
from __future__ import annotations

import re
from pathlib import Path

# Linear layers inside an attention module of a numbered block: Wan's blocks.N.attn1/attn2 (with add_k_proj and
# add_v_proj, the image cross-attention), CogVideoX's and LTX-2's transformer_blocks.N.attn1/attn2 and LTX-2's
# audio_attn1 / audio_to_video_attn …. Feed-forward layers are left out: the target is the attention LoRA.
ATTENTION_LINEAR = re.compile(r"^(blocks|transformer_blocks)\.\d+\.[a-z_0-9]*attn[a-z_0-9]*\.")
DEFAULT_RANK = 32
DELTA_SCALE = 0.02  # ‖B·A·x‖ about 2 % of ‖x‖: a trained LoRA's order of magnitude, so the run stays finite


def write_random_lora(transformer, path: Path, *, rank: int = DEFAULT_RANK, seed: int = 0,
                      prefix: str = "transformer") -> tuple[Path, int]:
    """Writes a rank-``rank`` LoRA on every attention linear layer of ``transformer`` to ``path`` (safetensors, in
    the transformer's dtype); returns the path and the number of layers it covers. The same ``seed`` and model give
    the same bytes (so the engine, which keys loaded adapters by sha256, loads it once)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    dtype = next(transformer.parameters()).dtype
    tensors = {}
    for name, module in transformer.named_modules():
        module = getattr(module, "base_layer", module)  # a layer an adapter already wraps keeps its own sizes
        if not isinstance(module, torch.nn.Linear) or not ATTENTION_LINEAR.match(name) or ".base_layer" in name \
                or ".lora_" in name:
            continue
        # A: unit-variance rows scaled by 1/sqrt(in), B: small, so that B·A·x is a few per cent of x whatever the
        # layer width (trained LoRAs start B at zero and end small).
        down = torch.randn(rank, module.in_features, generator=generator) / module.in_features ** 0.5
        up = torch.randn(module.out_features, rank, generator=generator) * DELTA_SCALE / rank ** 0.5
        tensors[f"{prefix}.{name}.lora_A.weight"] = down.to(dtype).contiguous()
        tensors[f"{prefix}.{name}.lora_B.weight"] = up.to(dtype).contiguous()
    if not tensors:
        raise ValueError(f"{type(transformer).__name__} has no attention linear layer in numbered blocks")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path, len(tensors) // 2
