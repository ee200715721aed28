"""Peak VRAM prediction for a request and a plan, from the model's architecture.

    peak = max(denoise stage, decode stage) × (1 + allocator slack) + CUDA context

    denoise stage = weights resident while the UNet runs
                    + UNet activations: FIXED + PER_UNIT × batch × frames × latent height × latent width
    decode stage  = weights resident while the VAE decodes + latents
                    + VAE decode activations: PER_PIXEL × decoded pixels per call (chunk × frame pixels,
                      or one tile per call with tiling)

Where the constants come from (all at 2 bytes per value, bf16/fp16; fp32 doubles them):
- Weights: parameter counts of the real architecture (``i2vgen_xl_config.parameter_counts``: UNet 1.42 B,
  image encoder 0.63 B, text encoder 0.35 B, VAE 0.08 B).
- UNet and VAE activations: the peak of simultaneously live tensors when the full-size model runs on PyTorch's
  meta device under a tracking dispatch mode, with attention modelled as flash/memory-efficient SDPA (no N²
  score matrix). ``tools/trace_vram.py`` reproduces the figures (``docs/VRAM.md``). The VAE figure,
  0.377 GiB per 512² frame, matches the 0.38 GiB measured on a GPU (shared/ENGINEERING.md); the UNet fit is
  within -5 %..+8 % of the traced peaks from 256² to 1024², 8 to 24 frames.
- Allocator slack (fragmentation, cuDNN/cuBLAS workspaces) and the CUDA context are estimates to be calibrated
  on a GPU (``docs/VRAM.md`` says which figures are measured and which are not).

The diffusion-transformer models (CogVideoX, Wan, EasyAnimate) have their own profile and formula: ``vram_dit.py``;
``predict_peak`` takes either profile.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from i2v.memory.transformer import TransformerMemoryProfile

GIB = 2**30
BYTES_PER_VALUE = {"bfloat16": 2, "float16": 2, "float32": 4}

UNET_ACTIVATION_FIXED = int(0.9 * GIB)  # bf16, full-size UNet (base width 320)
UNET_ACTIVATION_PER_UNIT = 20_000  # bytes per latent pixel × frame × batch element, bf16, base width 320
UNET_REFERENCE_WIDTH = 320
VAE_DECODE_PER_PIXEL = 1_540  # bytes per decoded output pixel, bf16 (decoder base width 512)
VAE_REFERENCE_WIDTH = 512
ALLOCATOR_SLACK = 0.10
CUDA_CONTEXT = int(0.5 * GIB)


@dataclass(frozen=True)
class MemoryProfile:
    """What the prediction needs to know about a model: parameters per component and activation widths."""

    unet_params: int
    vae_params: int
    text_encoder_params: int
    image_encoder_params: int
    unet_base_width: int = UNET_REFERENCE_WIDTH
    vae_decoder_width: int = VAE_REFERENCE_WIDTH
    vae_tile_pixels: int = 768 * 768  # AutoencoderKL tiles at its sample size (768 for this VAE)
    latent_channels: int = 4
    vae_scale_factor: int = 8


@dataclass(frozen=True)
class VramEstimate:
    peak_bytes: int
    stage: str  # which stage sets the peak: "denoise" or "decode"
    weights_denoise_bytes: int
    unet_activation_bytes: int
    weights_decode_bytes: int
    decode_activation_bytes: int
    slack_bytes: int
    context_bytes: int

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def weights_by_stage(self) -> dict[str, int]:
        """Bytes of weights on the GPU in each stage."""
        return {"denoise": self.weights_denoise_bytes, "decode": self.weights_decode_bytes}

    def activations_by_stage(self) -> dict[str, int]:
        return {"denoise": self.unet_activation_bytes, "decode": self.decode_activation_bytes}

    def phase_bytes(self, phase: str) -> int:
        """Weights + activations of the stage of ``phase`` that needs the most: "decode" is the VAE decode,
        "generate" every stage before it (the denoising call, with its encoders). A run fails in one of the two
        phases, and a retry helps only if it needs less in that one."""
        weights, activations = self.weights_by_stage(), self.activations_by_stage()
        return max(weights[stage] + activations[stage] for stage in weights
                   if (stage == "decode") == (phase == "decode"))

    def to_dict(self) -> dict:
        return {**asdict(self), "peak_gib": round(self.peak_gib, 2)}


def predict_peak(
    profile: MemoryProfile | TransformerMemoryProfile,
    *,
    width: int,
    height: int,
    frames: int,
    dtype: str,
    decode_chunk_size: int,
    vae_tiling: bool = False,
    cpu_offload: str = "none",
    guidance: bool = True,
) -> VramEstimate:
    if not isinstance(profile, MemoryProfile):  # a diffusion transformer; its VAE decodes no frame chunks
        from i2v.memory.transformer import predict_transformer_peak

        return predict_transformer_peak(profile, width=width, height=height, frames=frames, dtype=dtype,
                                        vae_tiling=vae_tiling, cpu_offload=cpu_offload, guidance=guidance)
    value = BYTES_PER_VALUE[dtype]
    scale = value / 2  # the activation constants are for 2-byte values
    batch = 2 if guidance else 1
    latent_pixels = (width // profile.vae_scale_factor) * (height // profile.vae_scale_factor)

    unet_w = profile.unet_params * value
    encoders_w = (profile.text_encoder_params + profile.image_encoder_params) * value
    vae_w = profile.vae_params * value
    if cpu_offload == "model":  # one model on the GPU at a time
        weights_denoise, weights_decode = unet_w, vae_w
    else:
        weights_denoise = weights_decode = unet_w + encoders_w + vae_w

    width_ratio = profile.unet_base_width / UNET_REFERENCE_WIDTH
    unet_act = int(scale * width_ratio * (UNET_ACTIVATION_FIXED + UNET_ACTIVATION_PER_UNIT * batch * frames
                                          * latent_pixels))
    frame_pixels = width * height
    pixels_per_call = min(frame_pixels, profile.vae_tile_pixels) if vae_tiling else frame_pixels
    chunk = max(1, min(decode_chunk_size, frames))
    decode_act = int(scale * (profile.vae_decoder_width / VAE_REFERENCE_WIDTH) * VAE_DECODE_PER_PIXEL * chunk
                     * pixels_per_call)
    latents = frames * latent_pixels * profile.latent_channels * 4 * 2  # fp32 copies on the way out

    denoise = weights_denoise + unet_act
    decode = weights_decode + decode_act + latents
    stage_peak = max(denoise, decode)
    slack = int(ALLOCATOR_SLACK * stage_peak)
    return VramEstimate(
        peak_bytes=stage_peak + slack + CUDA_CONTEXT,
        stage="denoise" if denoise >= decode else "decode",
        weights_denoise_bytes=weights_denoise,
        unet_activation_bytes=unet_act,
        weights_decode_bytes=weights_decode,
        decode_activation_bytes=decode_act,
        slack_bytes=slack,
        context_bytes=CUDA_CONTEXT,
    )
