"""LoRA files written at test time with random weights, in the layouts trainers save them: diffusers/PEFT names
(``transformer.<module>.lora_A.weight``, what ``save_lora_weights`` writes) and the original Wan / ComfyUI layout
(``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` with an ``alpha``, what Musubi and the lightx2v LoRAs use)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

# diffusers' Wan module names → the original repository's, for the attention and feed-forward layers of a block.
WAN_ORIGINAL_NAMES = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
                      "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "ffn.net.0.proj": "ffn.0",
                      "ffn.net.2": "ffn.2"}


def _pair(module: torch.nn.Linear, rank: int, generator: torch.Generator, scale: float):
    down = torch.randn(rank, module.in_features, generator=generator) * scale
    up = torch.randn(module.out_features, rank, generator=generator) * scale
    return down, up


def diffusers_lora(denoiser, path: Path, *, pattern: str = r"attn1\.to_(q|v)$", rank: int = 4, seed: int = 0,
                   scale: float = 0.5, prefix: str = "transformer") -> Path:
    """A LoRA on every linear layer whose name matches ``pattern``, in diffusers' PEFT names."""
    generator, tensors = torch.Generator().manual_seed(seed), {}
    for name, module in denoiser.named_modules():
        module = getattr(module, "base_layer", module)  # a layer an earlier LoRA already wrapped
        if isinstance(module, torch.nn.Linear) and re.search(pattern, name):
            down, up = _pair(module, rank, generator, scale)
            tensors[f"{prefix}.{name}.lora_A.weight"] = down
            tensors[f"{prefix}.{name}.lora_B.weight"] = up
    assert tensors, f"no layer matches {pattern}"
    save_file(tensors, str(path))
    return path


def wan_original_lora(transformer, path: Path, *, rank: int = 4, seed: int = 0, scale: float = 0.5,
                      extra_blocks: int = 0) -> Path:
    """A Wan LoRA in the original layout (lora_down / lora_up / alpha under ``diffusion_model.``), on every block's
    attention and feed-forward layers; ``extra_blocks`` adds blocks the model does not have (a LoRA for a deeper
    model: those tensors fit nothing)."""
    generator, tensors = torch.Generator().manual_seed(seed), {}
    blocks = list(transformer.blocks)
    for index in range(len(blocks) + extra_blocks):
        block = blocks[min(index, len(blocks) - 1)]
        for ours, original in WAN_ORIGINAL_NAMES.items():
            layer = block.get_submodule(ours)
            down, up = _pair(getattr(layer, "base_layer", layer), rank, generator, scale)
            key = f"diffusion_model.blocks.{index}.{original}"
            tensors[f"{key}.lora_down.weight"] = down
            tensors[f"{key}.lora_up.weight"] = up
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path))
    return path


def unet_lora(path: Path, *, seed: int = 0) -> Path:
    """A Kohya-layout LoRA for a Stable Diffusion UNet: it fits no video transformer."""
    generator, tensors = torch.Generator().manual_seed(seed), {}
    for block in range(2):
        key = f"lora_unet_down_blocks_{block}_attentions_0_transformer_blocks_0_attn1_to_q"
        tensors[f"{key}.lora_down.weight"] = torch.randn(4, 320, generator=generator)
        tensors[f"{key}.lora_up.weight"] = torch.randn(320, 4, generator=generator)
        tensors[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(tensors, str(path))
    return path
