"""Wan 2.1 I2V 14B's real architecture as configuration only (no weights): for the VRAM model, the parameter counts
and the tracing tool (``tools/trace_vram_dit.py``). Shared by the 480P and 720P checkpoints (identical shapes)."""
from __future__ import annotations

from functools import lru_cache

# -- the real architecture, as configuration only (no weights) ----------------------------------------------
# Sources: transformer: diffusers scripts/convert_wan_to_diffusers.py, model types "Wan-I2V-14B-480p" and
# "Wan-I2V-14B-720p" (identical), with WanTransformer3DModel's defaults for rope_max_seq_len/pos_embed_seq_len;
# VAE: the hub vae/config.json (base_dim 96, dim_mult [1, 2, 4, 4], z_dim 16, 2 res blocks, temporal downsampling
# in the last two levels); text encoder: Wan-AI/Wan2.1-I2V-14B-480P-Diffusers text_encoder/config.json (UMT5-XXL
# encoder); image encoder: the Wan 2.1 I2V image_encoder/config.json (OpenCLIP ViT-H/14 vision tower, loaded as
# CLIPVisionModel); scheduler: the conversion script's UniPCMultistepScheduler.
TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024,
    pos_embed_seq_len=None,
)
VAE_CONFIG = dict(
    base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
    temperal_downsample=(False, True, True), dropout=0.0, scale_factor_temporal=4, scale_factor_spatial=8,
)
TEXT_ENCODER_CONFIG = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_decoder_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
    layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
    scalable_attention=True, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)
IMAGE_ENCODER_CONFIG = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
    patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5,
)
SCHEDULER_CONFIG = dict(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                        flow_shift=3.0)


def build_full_size_components(device: str = "meta") -> dict:
    """Transformer, VAE, text and image encoders at full size with random weights (``"meta"`` allocates none)."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    with torch.device(device):
        return {
            "transformer": WanTransformer3DModel(**TRANSFORMER_CONFIG),
            "vae": AutoencoderKLWan(**{k: list(v) if isinstance(v, tuple) else v for k, v in VAE_CONFIG.items()}),
            "text_encoder": UMT5EncoderModel(UMT5Config(**TEXT_ENCODER_CONFIG)),
            "image_encoder": CLIPVisionModel(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG)),
        }


@lru_cache(maxsize=1)
def parameter_counts() -> dict[str, int]:
    """Parameters per component of the real architecture (counted on the meta device: no memory, < 1 s).
    transformer 16,394,878,784; text_encoder 5,680,910,336; image_encoder 630,766,080; vae 126,892,531."""
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in build_full_size_components().items()}
