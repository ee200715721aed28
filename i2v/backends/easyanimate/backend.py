"""EasyAnimate V5.1 image-to-video (e.g. ``alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers``) through diffusers'
``EasyAnimateInpaintPipeline``, from a hub id or a local folder in diffusers layout whose model_index.json names
that pipeline.

EasyAnimate has no image input as such: image-to-video is inpainting in time. The picture becomes frame 0 of a
conditioning video and a mask says "keep frame 0, generate the rest" (``i2v_conditioning``). Loading follows the
CogVideoX backend: each component on its own so weight-key problems are reported, then the components are checked
against each other (the transformer reads noise latents + mask + masked-video latents concatenated).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from i2v.errors import ModelLoadError
from i2v.planning.plan import ExecutionPlan
from i2v.spec import FrameRule, ModelSpec
from i2v.memory.transformer import TransformerMemoryProfile
from i2v.backends.base import DenoiseInputs, StepCallback
from i2v.backends import hub
from i2v.backends.folder_loader import load_components
from i2v.backends.pipeline_backend import PipelineBackend, latent_run_arguments

log = logging.getLogger(__name__)

# -- the real architecture (EasyAnimateV5.1-7b-zh-InP), as configuration only: no weights ------------------------
# transformer/config.json of the 7b V5.1 family (the 7b-zh-Control repo's file, read with the code search tool),
# with the inpaint model's in_channels = 16 + 1 + 16 = 33. Instantiated on the meta device this gives
# 6,814,670,912 parameters, exactly the published safetensors count of EasyAnimateV5.1-7b-zh-InP, which confirms
# both the shared keys and in_channels 33 (48 would add 15 × 3072 × 4 weights to the patch embedding).
TRANSFORMER_CONFIG = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=33, out_channels=16, patch_size=2,
    sample_width=90, sample_height=60, num_layers=36, mmdit_layers=18, time_embed_dim=512,
    text_embed_dim=3584, text_embed_dim_t5=None, add_norm_text_encoder=True, after_norm=False,
    activation_fn="gelu-approximate", timestep_activation_fn="silu", freq_shift=0, dropout=0.0, norm_eps=1e-5,
    norm_elementwise_affine=True, flip_sin_to_cos=True, time_position_encoding_type="3d_rope",
    resize_inpaint_mask_directly=True, enable_text_attention_mask=True, add_noise_in_inpaint_model=True,
)
# vae/config.json (identical across the V5/V5.1 repos): 4 blocks → 8× spatial, 4× temporal compression
# (AutoencoderKLMagvit: 2 ** (blocks - 1) and 2 ** (blocks - 2)). 244 M parameters (the 986 MB fp32 file).
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
    down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
    up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
    layers_per_block=2, norm_num_groups=32, scaling_factor=0.7125, spatial_group_norm=True,
)
# Qwen2-VL-7B-Instruct (the V5.1 text encoder; its module tree as published: 28 layers of 3584, 4 KV heads,
# vocabulary 152064, a 32-block 1280-wide vision tower). 8.29 B parameters, 0.68 B of them the unused vision tower.
TEXT_ENCODER_CONFIG = dict(
    text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False),
    vision_config=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, patch_size=14,
                       spatial_merge_size=2, temporal_patch_size=2),
    tie_word_embeddings=False,
)
# scheduler/scheduler_config.json of EasyAnimateV5.1-7b-zh-InP (flow matching; the pipeline passes mu=1).
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                        max_shift=1.15)


def build_full_size_components(device: str = "meta") -> dict:
    """Transformer, VAE and text encoder at full size with random weights (``device="meta"`` allocates none)."""
    import torch
    from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    with torch.device(device):
        return {
            "transformer": EasyAnimateTransformer3DModel(**TRANSFORMER_CONFIG),
            "vae": AutoencoderKLMagvit(**VAE_CONFIG),
            "text_encoder": Qwen2VLForConditionalGeneration(Qwen2VLConfig(**TEXT_ENCODER_CONFIG)),
        }


@lru_cache(maxsize=1)
def parameter_counts() -> dict[str, int]:
    """Parameters per component of the real architecture (counted on the meta device: no memory)."""
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in build_full_size_components().items()}


# -- what the backend accepts --------------------------------------------------------------------------------
PIPELINE_CLASS = "EasyAnimateInpaintPipeline"
# Sharded weights (…-00001-of-0000N.safetensors + an index json); Qwen2's tokenizer is vocab.json + merges.txt
# (+ tokenizer.json); transformers ≥ 5 saves chat templates as chat_template.jinja, which the pipeline needs.
HUB_ALLOW_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.jinja",
                      "*/diffusion_pytorch_model*.safetensors", "*/model*.safetensors"]

# Component -> (library, accepted class names). The pipeline's __init__ takes Qwen2-VL (V5.1) or Bert as the text
# encoder; anything else in model_index.json is refused, not imported.
_COMPONENTS = {
    "transformer": ("diffusers", {"EasyAnimateTransformer3DModel"}),
    "vae": ("diffusers", {"AutoencoderKLMagvit"}),
    "text_encoder": ("transformers", {"Qwen2VLForConditionalGeneration", "BertModel"}),
    "tokenizer": ("transformers", {"Qwen2Tokenizer", "Qwen2TokenizerFast", "BertTokenizer", "BertTokenizerFast"}),
}
_WEIGHTED = ("transformer", "vae", "text_encoder")
# V5.1 is a flow-matching model; the pipeline special-cases this scheduler (mu=1, scale_noise).
_SCHEDULERS = {"FlowMatchEulerDiscreteScheduler"}
# diffusers' inpaint pipeline reads vae.config.cache_mag_vae (resize the first frame's mask on its own), a key only
# configs converted from the original repo carry. diffusers' Magvit VAE always encodes frame 0 on its own, which is
# what True means (EasyAnimate's V5.1 config: cache_mag_vae: true).
_CACHE_MAG_VAE = True

EASYANIMATE_SPEC = ModelSpec(
    family="EasyAnimate V5.1 InP",
    # The Magvit VAE encodes frame 0 alone and then frames in groups of 4 (4× temporal compression): 4N+1 frames
    # give N+1 latent frames. Trained on 49 frames at 8 fps ("1 to 49 frames" in the model card).
    frame_rule=FrameRule(step=4, offset=1),
    min_frames=5,
    max_frames=49,
    size_multiple=16,  # 1/8-size latents, patchified 2×2 by the transformer; the pipeline refuses anything else
    min_side=256,  # the model card: "width and height can vary from 256 to 1024"
    max_side=1440,  # the 1024p tier at the 2:1 aspect limit (the authors' own memory table runs 768×1344)
    # Training crops span 0.42..2.4 (ASPECT_RATIO_RANDOM_CROP_512), with the ends sampled least; 2:1 keeps well
    # inside the often-seen shapes.
    max_aspect=2.0,
    latent_channels=16,
    vae_scale_factor=8,
    # The authors run V5.1 in bf16; fp16 is only their fallback for cards without bf16, and their V5 code needed
    # attention and VAE upcasting in fp16. Unmeasured here, so not offered: without bf16 it runs in float32.
    preferred_dtypes=("bfloat16", "float32"),
    resolution_tiers=(512, 768, 1024),  # trained multi-resolution at 512/768/1024, free aspect ratios
    native_size=(672, 384),  # the authors' example size (384×672 h×w): 512p at 16:9
    preset_key="easyanimate",
    max_prompt_tokens=256,  # Qwen2-VL's max_sequence_length in the pipeline, chat template included
    steps_range=(1, 250),
    guidance_range=(1.0, 30.0),
    fps_range=(1, 30),
    default_frames=49,
    default_steps=50,
    default_guidance=6.0,  # EasyAnimate's predict_i2v.py for V5.1 (the pipeline's own default is 5.0)
    default_fps=8,
    notes=("Up to 49 frames (6 s at 8 fps), counts of the form 4N+1, at any size in multiples of 16.",
           "Reads prompts with Qwen2-VL (up to 256 tokens, English or Chinese): long, descriptive prompts work.",
           "A negative prompt such as 'Twisted body, limb deformities, text captions, comic, static, ugly, "
           "error, messy code.' (the authors' example) steadies the motion."),
    # Parameters: parameter_counts() (a test keeps them equal; Qwen2-VL's unused vision tower is loaded too).
    # Activations: traced at full size on the meta device (tools/trace_vram_dit.py, docs/VRAM.md), not yet measured
    # on a GPU. The pipeline concatenates the conditional and unconditional inputs (batch 2) and encodes the whole
    # masked clip while Qwen2-VL is still on the GPU under offload: with offload that stage is the peak.
    memory=TransformerMemoryProfile(
        transformer_params=6_814_670_912, transformer_blocks=36, transformer_block_params=6_798_048_768,
        text_encoder_params=8_291_375_616,
        text_encoder_largest_layer_params=544_997_376, vae_params=244_375_507,
        cfg_batch=2, denoise_fixed=22_620_164, denoise_per_token=80_456, text_activation=145_760_256,
        encodes_clip=True, encode_resident=("text_encoder", "vae"), encode_per_pixel=11_247,
        encode_per_frame_pixel=7, decode_per_call_pixel=19_627, decode_per_frame_pixel=7, vae_tile=(512, 512),
        decode_tiled_per_call_pixel=19_614, decode_tiled_per_frame_pixel=7,
    ),
)


class EasyAnimateBackend(PipelineBackend):
    spec = EASYANIMATE_SPEC
    example_hub_id = "alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers"
    hub_allow_patterns = HUB_ALLOW_PATTERNS

    def _load_folder(self, folder: Path, dtype: str):
        return load_easyanimate_from_folder(folder, dtype, self.spec)

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback):
        import torch

        pipe = self.pipeline
        video, mask = i2v_conditioning(inputs.image, inputs.frames)
        # A transformer without the inpaint channels takes its start from vae.encode(...).latent_dist.sample(),
        # which ignores the generator: seed the global RNG too.
        torch.manual_seed(inputs.seed)
        # The pipeline draws its noise augmentation of the conditioning video with torch.randn(generator=...,
        # device=<execution device>), which refuses a CPU generator for a GPU tensor. So the generator lives on the
        # execution device: a seed reproduces a video on the same kind of device (CPU or CUDA), not across them.
        generator = torch.Generator(pipe._execution_device).manual_seed(inputs.seed)

        with self.transformer_cache_for_run():
            output = pipe(
                prompt=inputs.prompt,
                # With guidance the pipeline encodes the negative prompt unconditionally and fails on None.
                negative_prompt=inputs.negative_prompt or "",
                video=video,
                mask_video=mask,
                **latent_run_arguments(inputs, generator, on_step),
            )
        return output.frames  # latents, (batch, channels, latent frames, height/8, width/8)

    makes_previews = True

    def preview_latents(self, latents, inputs: DenoiseInputs):
        return latents[0]  # (1, channels, frames, h, w)

    def encode_preview_clip(self, video):
        """Scaled by ``scaling_factor`` as the pipeline scales the video's latents (``prepare_latents``)."""
        return self._encode_for_preview(video)[0] * self.pipeline.vae.config.scaling_factor

    def decode(self, latents, plan: ExecutionPlan, *, dtype: str | None = None):
        """Latents → (1, 3, frames, height, width) in [-1, 1]. The Magvit VAE already decodes one latent frame at a
        time with a causal conv cache, so ``plan.decode_chunk_size`` does not apply; tiling and slicing do."""
        import torch

        with self._vae_for_decode(plan, dtype) as (vae, target), torch.no_grad():
            # The execution device, not vae.device: with CPU offload the VAE's weights sit on the CPU until decode's
            # offload hook moves them, and that hook does not move the input.
            device = self.pipeline._execution_device
            scaled = latents.to(device=device, dtype=target) / vae.config.scaling_factor
            return vae.decode(scaled).sample


def i2v_conditioning(image, frames: int):
    """The picture as EasyAnimate's inpainting inputs: ``video`` (1, 3, frames, H, W) in [0, 1] and ``mask_video``
    (1, 1, frames, H, W), 0 = keep, 255 = generate; the same tensors as diffusers' ``get_image_to_video_latent``.

    What the model sees: the pipeline blanks every frame the mask marks "generate" to -1 (black) in the masked
    video it encodes, so the transformer reads noise latents + a mask channel that marks the first latent frame +
    the latents of (picture, black, black, …). The pixels of frames 1.. are read only where the pipeline needs
    pixel content for them: it starts from the encoded video when strength < 1 or when the transformer lacks the
    inpaint channels (neither happens here: strength stays 1 and the loader refuses such a transformer). They are
    the picture repeated, the edge frame, never zeros, so such a start would be the still picture, not a black clip.
    """
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    channels, height, width = pixels.shape
    video = pixels[None, :, None].expand(1, channels, frames, height, width).contiguous()
    mask = torch.full((1, 1, frames, height, width), 255.0)
    mask[:, :, 0] = 0.0
    return video, mask


# -- loading helpers ---------------------------------------------------------------------------------------
def read_model_index(folder: Path) -> dict:
    return hub.read_model_index(folder, PIPELINE_CLASS, accepts=" (EasyAnimate V5.1 image-to-video, e.g. "
                                "alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers)")


def load_easyanimate_from_folder(folder: Path, dtype: str, spec: ModelSpec = EASYANIMATE_SPEC):
    """Load every component from ``folder``; return (pipeline, warnings, component class names)."""
    import diffusers

    loaded, found, classes = load_components(folder, read_model_index(folder), _COMPONENTS, dtype,
                                             weighted=_WEIGHTED)
    if classes["scheduler"] not in _SCHEDULERS:
        raise ModelLoadError(
            f"{folder}: scheduler {classes['scheduler']} does not work with EasyAnimate V5.1 (a "
            f"flow-matching model); expected {', '.join(sorted(_SCHEDULERS))}."
        )
    check_components_agree(loaded, spec)
    if getattr(loaded["vae"].config, "cache_mag_vae", None) is None:
        loaded["vae"].register_to_config(cache_mag_vae=_CACHE_MAG_VAE)
    return diffusers.EasyAnimateInpaintPipeline(**loaded), found, classes


def inpaint_in_channels(latent_channels: int, resize_inpaint_mask_directly: bool) -> int:
    """What the inpaint transformer reads, concatenated on channels: the noise latents, the mask (one channel
    resized straight to latent size, or the VAE-encoded mask with ``latent_channels``) and the masked-video
    latents (the pipeline's own check: latents + mask + masked image = transformer in_channels)."""
    mask_channels = 1 if resize_inpaint_mask_directly else latent_channels
    return latent_channels + mask_channels + latent_channels


def check_components_agree(components: dict, spec: ModelSpec = EASYANIMATE_SPEC) -> None:
    """Shape mistakes fail late and confusingly inside the first transformer call; catch them at load time."""
    transformer, vae = components["transformer"].config, components["vae"].config
    latent = vae.latent_channels
    direct = bool(transformer.resize_inpaint_mask_directly)
    expected = inpaint_in_channels(latent, direct)
    if transformer.in_channels != expected:
        mask = "1 (mask)" if direct else f"{latent} (encoded mask)"
        raise ModelLoadError(
            f"The model's components do not fit together: the VAE has {latent} latent channels, so the "
            f"transformer must take {latent} (noise latents) + {mask} + {latent} (masked-video latents) = "
            f"{expected} input channels, but it takes {transformer.in_channels}. Use a VAE and transformer from "
            "the same EasyAnimate image-to-video (InP) checkpoint."
        )
    checks = [
        ("VAE latent channels", latent, "transformer output channels", transformer.out_channels),
        ("text encoder hidden size", _text_hidden_size(components["text_encoder"].config),
         "transformer text embedding dim", transformer.text_embed_dim),
    ]
    for left_name, left, right_name, right in checks:
        if left != right:
            raise ModelLoadError(
                f"The model's components do not fit together: {left_name} is {left} but {right_name} is {right}."
            )
    if not transformer.enable_text_attention_mask:
        raise ModelLoadError("The transformer has enable_text_attention_mask off; the EasyAnimate pipeline cannot "
                             "encode prompts for it (it needs the LLM's attention mask).")
    _check_variant(transformer, components["vae"], spec)


def _text_hidden_size(config) -> int:
    # Qwen2-VL keeps the language model's size in text_config (transformers ≥ 5); Bert has it at the top.
    text_config = getattr(config, "text_config", None)
    return text_config.hidden_size if text_config is not None else config.hidden_size


def _check_variant(transformer, vae, spec: ModelSpec) -> None:
    """The spec was declared before loading; refuse a checkpoint whose shape rules differ from it."""
    spatial, temporal = vae.spatial_compression_ratio, vae.temporal_compression_ratio
    latent = vae.config.latent_channels
    if latent != spec.latent_channels or spatial != spec.vae_scale_factor:
        raise ModelLoadError(
            f"The VAE has {latent} latent channels at 1/{spatial} size; {spec.family} expects "
            f"{spec.latent_channels} at 1/{spec.vae_scale_factor}. This is not the checkpoint the model name implies."
        )
    if temporal != spec.frame_rule.step:
        raise ModelLoadError(
            f"The VAE compresses time {temporal}×, so it needs {temporal}N+1 frames; {spec.family} is declared "
            f"with {spec.frame_rule.describe()} frames."
        )
    patch = transformer.patch_size * spatial
    if spec.size_multiple % patch:
        raise ModelLoadError(
            f"The transformer needs sizes in multiples of {patch} pixels; {spec.family} is declared with multiples "
            f"of {spec.size_multiple}."
        )
