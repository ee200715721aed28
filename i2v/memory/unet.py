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

The diffusion-transformer models (CogVideoX, Wan, EasyAnimate) have their own profile and formula
(``transformer.py``); both predict their own peak behind the ``estimate.MemoryProfile`` interface.
"""
from __future__ import annotations

from dataclasses import dataclass

from i2v.memory.estimate import ALLOCATOR_SLACK, BYTES_PER_VALUE, CUDA_CONTEXT, GIB, VramEstimate

UNET_ACTIVATION_FIXED = int(0.9 * GIB)  # bf16, full-size UNet (base width 320)
UNET_ACTIVATION_PER_UNIT = 20_000  # bytes per latent pixel × frame × batch element, bf16, base width 320
UNET_REFERENCE_WIDTH = 320
VAE_DECODE_PER_PIXEL = 1_540  # bytes per decoded output pixel, bf16 (decoder base width 512)
VAE_REFERENCE_WIDTH = 512
FEWER_FRAMES = (16, 12, 8)  # the planner's fewer-frames rungs: activations grow with frames × pixels


@dataclass(frozen=True)
class UNetMemoryProfile:
    """What the prediction needs to know about a UNet model (I2VGen-XL): parameters per component and activation
    widths."""

    unet_params: int
    vae_params: int
    text_encoder_params: int
    image_encoder_params: int
    unet_base_width: int = UNET_REFERENCE_WIDTH
    vae_decoder_width: int = VAE_REFERENCE_WIDTH
    vae_tile_pixels: int = 768 * 768  # AutoencoderKL tiles at its sample size (768 for this VAE)
    latent_channels: int = 4
    vae_scale_factor: int = 8

    # 2-D VAE: the plan's frame chunks set the decode's memory (a pixel-for-pixel same video).
    decodes_in_frame_chunks = True
    streams_blocks = False  # group offload and fp8 weights are planned for the transformers only

    def frame_rungs(self, frames: int) -> tuple[int, ...]:
        """Frame counts the planner may fall back to (before the model's frame rule snaps them)."""
        return tuple(n for n in FEWER_FRAMES if n < frames)

    def predict_peak(self, *, width: int, height: int, frames: int, dtype: str, decode_chunk_size: int = 1,
                     vae_tiling: bool = False, cpu_offload: str = "none", fp8_weights: bool = False,
                     guidance: bool = True) -> VramEstimate:
        value = BYTES_PER_VALUE[dtype]
        scale = value / 2  # the activation constants are for 2-byte values
        batch = 2 if guidance else 1
        latent_pixels = (width // self.vae_scale_factor) * (height // self.vae_scale_factor)

        unet_w = self.unet_params * value
        encoders_w = (self.text_encoder_params + self.image_encoder_params) * value
        vae_w = self.vae_params * value
        if cpu_offload == "model":  # one model on the GPU at a time
            weights_denoise, weights_decode = unet_w, vae_w
        else:
            weights_denoise = weights_decode = unet_w + encoders_w + vae_w

        width_ratio = self.unet_base_width / UNET_REFERENCE_WIDTH
        unet_act = int(scale * width_ratio * (UNET_ACTIVATION_FIXED + UNET_ACTIVATION_PER_UNIT * batch * frames
                                              * latent_pixels))
        frame_pixels = width * height
        pixels_per_call = min(frame_pixels, self.vae_tile_pixels) if vae_tiling else frame_pixels
        chunk = max(1, min(decode_chunk_size, frames))
        decode_act = int(scale * (self.vae_decoder_width / VAE_REFERENCE_WIDTH) * VAE_DECODE_PER_PIXEL * chunk
                         * pixels_per_call)
        latents = frames * latent_pixels * self.latent_channels * 4 * 2  # fp32 copies on the way out

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
