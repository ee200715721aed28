"""The linear map from one model's latent channels to RGB: ``rgb = latents · weight + bias``, per latent pixel.

Why linear: a VAE's latent channels are, to a good approximation, a linear code of the local colour (that is why
the well-known hand-made "latent RGB factors" of Stable Diffusion previews work). One matrix multiply per step
costs microseconds where a VAE decode costs seconds and gigabytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# A little ridge regularisation: with 128 channels (LTX-2) and few fitting pixels, plain least squares would give
# huge opposite weights to nearly collinear channels, and noisy mid-run latents would come out as colour noise.
RIDGE = 1e-3


@dataclass(frozen=True)
class LatentRgbMap:
    weight: object  # torch float32 (channels, 3)
    bias: object  # torch float32 (3,)
    source: str = "fitted"  # "fitted" (made in this process) or "file" (read from the cache): shows reuse
    fit_residual: float | None = field(default=None, compare=False)  # RMS error on the fitting pixels, RGB in 0..1

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0])

    @classmethod
    def fit(cls, latents, rgb) -> "LatentRgbMap":
        """Least squares (ridge) from latent pixels ``latents`` (N, channels) to their colours ``rgb`` (N, 3) in
        0..1; a column of ones fits the bias."""
        import torch

        x = latents.double()
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
        design = torch.cat([x, ones], dim=1)
        # Ridge as extra rows (sqrt(λ)·I, target 0) so torch.linalg.lstsq solves it; the bias row is not shrunk.
        scale = float(design.pow(2).mean().sqrt()) or 1.0
        penalty = torch.eye(design.shape[1], dtype=x.dtype) * (RIDGE ** 0.5) * scale * (x.shape[0] ** 0.5)
        penalty[-1, -1] = 0.0
        solution = torch.linalg.lstsq(torch.cat([design, penalty]),
                                      torch.cat([rgb.double(), torch.zeros(design.shape[1], 3, dtype=x.dtype)])
                                      ).solution
        residual = float((design @ solution - rgb.double()).pow(2).mean().sqrt())
        return cls(solution[:-1].float(), solution[-1].float(), "fitted", residual)

    def apply(self, latents):
        """``latents`` (channels, frames, h, w) → RGB (frames, h, w, 3) in 0..1, on the latents' device."""
        import torch

        if latents.shape[0] != self.channels:
            raise ValueError(f"the preview map takes {self.channels} latent channels, the latents have "
                             f"{latents.shape[0]} (layout (channels, frames, h, w) expected)")
        weight = self.weight.to(device=latents.device)
        rgb = torch.einsum("cfhw,cr->fhwr", latents.float(), weight) + self.bias.to(latents.device)
        return rgb.clamp_(0.0, 1.0)

    def to_dict(self) -> dict:
        return {"weight": self.weight.tolist(), "bias": self.bias.tolist(), "fit_residual": self.fit_residual}

    @classmethod
    def from_dict(cls, data: dict) -> "LatentRgbMap":
        import torch

        weight = torch.tensor(data["weight"], dtype=torch.float32)
        bias = torch.tensor(data["bias"], dtype=torch.float32)
        if weight.ndim != 2 or weight.shape[1] != 3 or bias.shape != (3,):
            raise ValueError(f"a preview map needs weight (channels, 3) and bias (3,), got {tuple(weight.shape)} "
                             f"and {tuple(bias.shape)}")
        return cls(weight, bias, "file", data.get("fit_residual"))
