"""I2VGen-XL's real architecture (ali-vilab/i2vgen-xl), as configuration only: no weights.

Used to build a full-size random-weight model for speed and memory measurements on a GPU, and to count the
parameters behind the VRAM prediction without downloading anything. The parameter counts these configs give
(UNet 1.42 B, image encoder 0.63 B, text encoder 0.35 B, VAE 0.08 B) match the published checkpoint.
"""
from __future__ import annotations

from functools import lru_cache

UNET = dict(
    sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, norm_num_groups=32,
    cross_attention_dim=1024, attention_head_dim=64, num_attention_heads=None,
)
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=768,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)
TEXT_ENCODER = dict(  # OpenCLIP ViT-H/14 text tower
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=1024, bos_token_id=0, eos_token_id=2,
    pad_token_id=1,
)
IMAGE_ENCODER = dict(  # CLIP ViT-H/14 vision tower
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
    patch_size=14, projection_dim=1024, hidden_act="gelu",
)


def build_full_size_components(dtype=None, device: str = "meta") -> dict:
    """UNet, VAE, text and image encoders at full size with random weights (``device="meta"`` allocates none)."""
    import torch
    from diffusers import AutoencoderKL, I2VGenXLUNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device(device):
        components = {
            "unet": I2VGenXLUNet(**UNET),
            "vae": AutoencoderKL(**VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER)),
            "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER)),
        }
    if dtype is not None:
        for module in components.values():
            module.to(dtype=dtype)
    return components


@lru_cache(maxsize=1)
def parameter_counts() -> dict[str, int]:
    """Parameters per component of the real architecture (counted on the meta device: no memory, ~1 s)."""
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in build_full_size_components().items()}
