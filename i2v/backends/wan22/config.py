"""Wan 2.2's real architectures as configuration only (no weights): for the VRAM model's parameter counts. Both
checkpoints read prompts with the same UMT5-XXL encoder as Wan 2.1 and have no CLIP image encoder.

Sources: Wan's own configs (github.com/Wan-Video/Wan2.2, ``wan/configs/wan_ti2v_5B.py`` and ``wan_i2v_A14B.py``) as
diffusers' ``scripts/convert_wan_to_diffusers.py`` maps them to ``WanTransformer3DModel`` and ``AutoencoderKLWan``:
TI2V-5B: dim 3072 (24 heads × 128), ffn 14336, 30 layers, 48 input and output channels, the Wan 2.2 VAE (z 48,
16× space: 8× in its layers after a 2×2 patchify of the RGB input, encoder width 160, decoder width 256, residual
blocks); I2V-A14B: two experts, each Wan 2.1 I2V 14B's transformer without the image cross-attention (dim 5120,
40 layers, 36 input channels), and Wan 2.1's VAE (z 16, 8× space)."""
from __future__ import annotations

from functools import lru_cache

UMT5_XXL_CONFIG = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_decoder_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
    layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
    scalable_attention=True, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)

TI2V_5B_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
    text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)
TI2V_5B_VAE_CONFIG = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
    temperal_downsample=(False, True, True), dropout=0.0, is_residual=True, in_channels=12, out_channels=12,
    patch_size=2, scale_factor_temporal=4, scale_factor_spatial=16,
    # The hub's 48 latents_mean/latents_std values normalise latents; they are not parameters and not needed here.
    latents_mean=(0.0,) * 48, latents_std=(1.0,) * 48,
)
A14B_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)
A14B_VAE_CONFIG = dict(
    base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
    temperal_downsample=(False, True, True), dropout=0.0, scale_factor_temporal=4, scale_factor_spatial=8,
)
# Wan 2.2's sampler settings (its configs): flow shift 5.0 for both; A14B switches experts at t = 0.9 × 1000.
TI2V_5B_SCHEDULER_CONFIG = dict(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                flow_shift=5.0)
A14B_SCHEDULER_CONFIG = dict(TI2V_5B_SCHEDULER_CONFIG)
A14B_BOUNDARY_RATIO = 0.9


def _lists(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) and k != "patch_size" else v for k, v in config.items()}


def build_full_size_components(model: str, device: str = "meta") -> dict:
    """``model`` "ti2v-5b" or "a14b": its components at full size with random weights (``"meta"`` allocates none).
    A14B's two experts have the same shape; one is built (``transformer``) and counted once per expert."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    transformer, vae = {"ti2v-5b": (TI2V_5B_TRANSFORMER_CONFIG, TI2V_5B_VAE_CONFIG),
                        "a14b": (A14B_TRANSFORMER_CONFIG, A14B_VAE_CONFIG)}[model]
    with torch.device(device):
        return {
            "transformer": WanTransformer3DModel(**transformer),
            "vae": AutoencoderKLWan(**_lists(vae)),
            "text_encoder": UMT5EncoderModel(UMT5Config(**UMT5_XXL_CONFIG)),
        }


@lru_cache(maxsize=2)
def parameter_counts(model: str) -> dict[str, int]:
    """Parameters per component (one expert for A14B), and ``transformer_fp32`` of them in the modules diffusers
    keeps in float32 (``_keep_in_fp32_modules``); counted on the meta device, no memory, about a second."""
    components = build_full_size_components(model)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in components.items()}
    transformer = components["transformer"]
    keep = set(transformer._keep_in_fp32_modules or ())
    counts["transformer_fp32"] = sum(p.numel() for name, p in transformer.named_parameters()
                                     if keep.intersection(name.split(".")))
    return counts
