"""Trace the full-size I2VGen-XL's activation memory on PyTorch's meta device (no GPU, no weights, seconds).

Every tensor created while the UNet (or the VAE decoder) runs is counted until it is freed; the peak of live
bytes is the activation peak. Attention is modelled as flash / memory-efficient SDPA (output only, no N² score
matrix), which is what PyTorch uses on a modern GPU. Run: ``.venv/bin/python tools/trace_vram.py``. The
constants in ``i2v/memory/unet.py`` were fitted to this output (see docs/VRAM.md).
"""
from __future__ import annotations

import sys
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from i2v.backends.i2vgen_xl.config import build_full_size_components  # noqa: E402
from i2v.memory.unet import UNetMemoryProfile  # noqa: E402

GIB = 2**30


class LiveBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self.sizes:
                    self.sizes[key] = storage.nbytes()
                    self.live += self.sizes[key]
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)


def flash_like_sdpa(query, key, value, *args, **kwargs):
    return torch.empty(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)


def main() -> None:
    F.scaled_dot_product_attention = flash_like_sdpa
    parts = build_full_size_components(dtype=torch.bfloat16)
    unet, vae = parts["unet"].eval(), parts["vae"].eval()
    profile = UNetMemoryProfile(0, 0, 0, 0)  # activations only
    print("| shape | traced UNet activations (GiB) | formula (GiB) | error |")
    print("|---|---|---|---|")
    for height, width, frames in [(256, 256, 16), (512, 512, 8), (512, 512, 16), (768, 768, 24),
                                  (704, 1280, 16), (1024, 1024, 16)]:
        batch, lh, lw = 2, height // 8, width // 8
        with torch.no_grad(), torch.device("meta"):
            sample = torch.randn(batch, 4, frames, lh, lw, dtype=torch.bfloat16)
            tracker = LiveBytes()
            with tracker:
                unet(sample, torch.tensor(500), encoder_hidden_states=torch.randn(batch, 77, 1024, dtype=torch.bfloat16),
                     fps=torch.tensor([8] * batch), image_latents=torch.randn_like(sample),
                     image_embeddings=torch.randn(batch, 1, 1024, dtype=torch.bfloat16), return_dict=False)
        formula = profile.predict_peak(width=width, height=height, frames=frames, dtype="bfloat16",
                               decode_chunk_size=1).unet_activation_bytes
        print(f"| {width}×{height}×{frames} | {tracker.peak / GIB:.3f} | {formula / GIB:.3f} | "
              f"{100 * (formula - tracker.peak) / tracker.peak:+.1f} % |")
    print()
    print("| decode call | traced VAE activations (GiB) | bytes per pixel |")
    print("|---|---|---|")
    for height, width, count in [(512, 512, 1), (512, 512, 4), (704, 1280, 1)]:
        with torch.no_grad(), torch.device("meta"):
            tracker = LiveBytes()
            with tracker:
                vae.decode(torch.randn(count, 4, height // 8, width // 8, dtype=torch.bfloat16))
        print(f"| {count} × {width}×{height} | {tracker.peak / GIB:.3f} | {tracker.peak / (count * height * width):.0f} |")


if __name__ == "__main__":
    main()
