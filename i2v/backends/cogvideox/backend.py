"""CogVideoX image-to-video (1.0, e.g. ``THUDM/CogVideoX-5b-I2V``) through diffusers, from a hub id or a local
folder in diffusers layout whose model_index.json names ``CogVideoXImageToVideoPipeline``.

Loading follows the I2VGen-XL backend: each component on its own so weight-key problems are reported, then the
components are checked against each other (the transformer reads the noise latents and the image latents
concatenated, so its input channels must be twice the VAE's latent channels).
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

PIPELINE_CLASS = "CogVideoXImageToVideoPipeline"
# The real checkpoints are sharded (…-00001-of-00003.safetensors + an index json) and the tokenizer is a
# SentencePiece file; the repos also hold fp16/bf16 duplicates we do not need.
HUB_ALLOW_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model",
                      "*/diffusion_pytorch_model*.safetensors", "*/model*.safetensors"]

# Component -> (library, accepted class names). Anything else in model_index.json is refused, not imported.
_COMPONENTS = {
    "transformer": ("diffusers", {"CogVideoXTransformer3DModel"}),
    "vae": ("diffusers", {"AutoencoderKLCogVideoX"}),
    "text_encoder": ("transformers", {"T5EncoderModel"}),
    "tokenizer": ("transformers", {"T5Tokenizer", "T5TokenizerFast"}),
}
_WEIGHTED = ("transformer", "vae", "text_encoder")
_SCHEDULERS = {"CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"}

# -- the real architecture (THUDM/CogVideoX-5b-I2V), as configuration only: no weights -----------------------------
# transformer/config.json of the hub repo (diffusers' convert_cogvideox_to_diffusers.py with --i2v: 42 layers, 48
# heads, rotary + learned positional embeddings, in_channels 32 = noise + image latents); the rest are
# CogVideoXTransformer3DModel's defaults, which the hub file spells out. vae/config.json: AutoencoderKLCogVideoX's
# defaults with the 5B scaling factor 0.7. text_encoder: google/t5-v1_1-xxl's encoder (T5EncoderModel).
TRANSFORMER_CONFIG = dict(
    activation_fn="gelu-approximate", attention_bias=True, attention_head_dim=64, dropout=0.0, flip_sin_to_cos=True,
    freq_shift=0, in_channels=32, max_text_seq_length=226, norm_elementwise_affine=True, norm_eps=1e-5,
    num_attention_heads=48, num_layers=42, out_channels=16, patch_size=2, sample_frames=49, sample_height=60,
    sample_width=90, spatial_interpolation_scale=1.875, temporal_compression_ratio=4, temporal_interpolation_scale=1.0,
    text_embed_dim=4096, time_embed_dim=512, timestep_activation_fn="silu", use_learned_positional_embeddings=True,
    use_rotary_positional_embeddings=True,
)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 256, 512), layers_per_block=3,
    norm_num_groups=32, norm_eps=1e-6, act_fn="silu", temporal_compression_ratio=4, sample_height=480,
    sample_width=720, scaling_factor=0.7,
)
TEXT_ENCODER_CONFIG = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6, tie_word_embeddings=False,
)


def build_full_size_components(device: str = "meta") -> dict:
    """Transformer, VAE and text encoder at full size with random weights (``device="meta"`` allocates none)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    with torch.device(device):
        return {
            "transformer": CogVideoXTransformer3DModel(**TRANSFORMER_CONFIG),
            "vae": AutoencoderKLCogVideoX(**VAE_CONFIG),
            "text_encoder": T5EncoderModel(T5Config(**TEXT_ENCODER_CONFIG)),
        }


@lru_cache(maxsize=1)
def parameter_counts() -> dict[str, int]:
    """Parameters per component of the real architecture (counted on the meta device: no memory, < 1 s).
    transformer 5,570,479,680 (the hub's 11.1 GB of bf16 weights); text_encoder 4,762,310,656; vae 215,583,907."""
    return {name: sum(p.numel() for p in module.parameters())
            for name, module in build_full_size_components().items()}


COGVIDEOX_SPEC = ModelSpec(
    family="CogVideoX-I2V",
    takes_loras=True,  # CogVideoXLoraLoaderMixin
    # The causal 3D VAE compresses time 4×, and its encoder takes frames in batches of 8 (1, 8k or 8k+1 frames:
    # diffusers' AutoencoderKLCogVideoX._encode); CogVideoX 1.0 was trained on 49 = 8·6+1 frames.
    frame_rule=FrameRule(step=8, offset=1),
    min_frames=9,
    max_frames=49,  # the training length; the learned positional embeddings cover 13 latent frames
    size_multiple=16,  # 1/8-size latents, patchified 2×2 by the transformer
    min_side=64,  # explicit sizes in this range are accepted and resolved to the fixed size with a notice
    max_side=2048,
    max_aspect=1.5,
    latent_channels=16,
    vae_scale_factor=8,
    # float16 overflows in this model (NaN → black video); without bf16 it runs in float32.
    preferred_dtypes=("bfloat16", "float32"),
    resolution_tiers=(480,),  # shown as "480p": the model's one size, 720×480
    native_size=(720, 480),
    fixed_size=True,  # CogVideoX-5b-I2V's learned positional embeddings refuse any other size
    preset_key="cogvideox",
    max_prompt_tokens=226,  # T5, the transformer's text positions
    steps_range=(1, 250),
    guidance_range=(1.0, 30.0),
    fps_range=(1, 30),
    default_frames=49,
    default_steps=50,
    default_guidance=6.0,
    default_fps=8,
    notes=("Generates 720×480 only, up to 49 frames (6 s at 8 fps).",
           "Reads prompts with T5 (up to 226 tokens), not CLIP: long, descriptive prompts work well."),
    # Parameters: parameter_counts() (a test keeps them equal). Activations: traced at full size on the meta device
    # (tools/trace_vram_dit.py, docs/VRAM.md), not yet measured on a GPU. The pipeline concatenates the conditional
    # and unconditional inputs (batch 2) and encodes the picture alone, while T5 is still on the GPU under offload.
    memory=TransformerMemoryProfile(
        transformer_params=5_570_479_680, transformer_blocks=42, transformer_block_params=5_552_300_544,
        text_encoder_params=4_762_310_656,
        text_encoder_largest_layer_params=131_597_312, vae_params=215_583_907,
        cfg_batch=2, denoise_fixed=20_453_392, denoise_per_token=80_512, text_activation=50_336_528,
        encodes_clip=False, encode_resident=("text_encoder", "vae"), encode_per_pixel=5_330,
        decode_per_call_pixel=45_793, decode_per_frame_pixel=0, vae_tile=(360, 240),
        decode_tiled_per_call_pixel=45_783, decode_tiled_per_frame_pixel=6,
    ),
)


class CogVideoXBackend(PipelineBackend):
    spec = COGVIDEOX_SPEC
    example_hub_id = "THUDM/CogVideoX-5b-I2V"
    hub_allow_patterns = HUB_ALLOW_PATTERNS

    def _load_folder(self, folder: Path, dtype: str):
        return load_cogvideox_from_folder(folder, dtype, self.spec)

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback):
        import torch

        pipe = self.pipeline
        # vae.encode(...).latent_dist.sample() of the conditioning image: seed the global RNG too.
        torch.manual_seed(inputs.seed)
        # A CPU generator gives the same starting noise on every device for a seed.
        generator = torch.Generator("cpu").manual_seed(inputs.seed)

        with self.transformer_cache_for_run():
            output = pipe(
                image=inputs.image,
                prompt=inputs.prompt,
                negative_prompt=inputs.negative_prompt or None,
                **latent_run_arguments(inputs, generator, on_step),
                # The transformer's text positions: 226 for the real model; a longer sequence does not fit.
                max_sequence_length=pipe.transformer.config.max_text_seq_length,
            )
        return output.frames  # latents, (batch, latent frames, channels, height/8, width/8)

    makes_previews = True

    def preview_latents(self, latents, inputs: DenoiseInputs):
        """CogVideoX keeps its latents frames first: (1, frames, channels, h, w)."""
        return latents[0].permute(1, 0, 2, 3)

    def encode_preview_clip(self, video):
        """Scaled by ``scaling_factor`` as the pipeline scales the picture's latents (``prepare_latents``)."""
        return self._encode_for_preview(video)[0] * self.pipeline.vae.config.scaling_factor

    def decode(self, latents, plan: ExecutionPlan, *, dtype: str | None = None):
        """Latents → (1, 3, frames, height, width). The causal VAE decodes the whole clip with a temporal conv
        cache, so ``plan.decode_chunk_size`` (frame chunks) does not apply; tiling and slicing do."""
        import torch

        with self._vae_for_decode(plan, dtype) as (vae, target), torch.no_grad():
            # decode_latents is not under the pipeline's no_grad
            # The execution device, not vae.device: under model offload the VAE waits on the CPU until its
            # decode hook moves it, and latents left there would meet a GPU VAE.
            return self.pipeline.decode_latents(latents.to(device=self.pipeline._execution_device, dtype=target))


# -- loading helpers ---------------------------------------------------------------------------------------
def read_model_index(folder: Path) -> dict:
    return hub.read_model_index(folder, PIPELINE_CLASS)


def load_cogvideox_from_folder(folder: Path, dtype: str, spec: ModelSpec = COGVIDEOX_SPEC):
    """Load every component from ``folder``; return (pipeline, warnings, component class names)."""
    import diffusers

    loaded, found, classes = load_components(folder, read_model_index(folder), _COMPONENTS, dtype,
                                             weighted=_WEIGHTED)
    if classes["scheduler"] not in _SCHEDULERS:
        raise ModelLoadError(
            f"{folder}: scheduler {classes['scheduler']} does not work with this pipeline; "
            f"expected one of {', '.join(sorted(_SCHEDULERS))}."
        )
    check_components_agree(loaded, spec)
    return diffusers.CogVideoXImageToVideoPipeline(**loaded), found, classes


def check_components_agree(components: dict, spec: ModelSpec = COGVIDEOX_SPEC) -> None:
    """Shape mistakes fail late and confusingly inside the first transformer call; catch them at load time."""
    transformer, vae = components["transformer"].config, components["vae"].config
    text_cfg = components["text_encoder"].config
    if transformer.in_channels != 2 * vae.latent_channels:
        raise ModelLoadError(
            f"The model's components do not fit together: the VAE has {vae.latent_channels} latent channels, so the "
            f"transformer must take 2 × {vae.latent_channels} = {2 * vae.latent_channels} input channels (noise "
            f"latents + image latents), but it takes {transformer.in_channels}. Use a VAE and transformer from "
            "the same CogVideoX image-to-video checkpoint."
        )
    checks = [
        ("VAE latent channels", vae.latent_channels, "transformer output channels", transformer.out_channels),
        ("text encoder hidden size", text_cfg.d_model, "transformer text embedding dim", transformer.text_embed_dim),
        ("VAE temporal compression", vae.temporal_compression_ratio, "transformer temporal compression",
         transformer.temporal_compression_ratio),
    ]
    for left_name, left, right_name, right in checks:
        if left != right:
            raise ModelLoadError(
                f"The model's components do not fit together: {left_name} is {left} but {right_name} is {right}."
            )
    _check_variant(transformer, vae, spec)


def _check_variant(transformer, vae, spec: ModelSpec) -> None:
    """The spec was declared before loading; refuse a checkpoint whose shape rules differ from it."""
    if transformer.patch_size_t is not None:
        raise ModelLoadError(
            "This is a CogVideoX 1.5 checkpoint (temporal patches, 16N+1 frames, free sizes); only CogVideoX 1.0 "
            "image-to-video (e.g. THUDM/CogVideoX-5b-I2V) is supported so far."
        )
    scale = 2 ** (len(vae.block_out_channels) - 1)
    if vae.latent_channels != spec.latent_channels or scale != spec.vae_scale_factor:
        raise ModelLoadError(
            f"The VAE has {vae.latent_channels} latent channels at 1/{scale} size; {spec.family} expects "
            f"{spec.latent_channels} at 1/{spec.vae_scale_factor}. This is not the checkpoint the model name implies."
        )
    if transformer.use_learned_positional_embeddings:
        trained = (transformer.sample_width * scale, transformer.sample_height * scale)
        if trained != spec.native_size:
            raise ModelLoadError(
                f"The transformer only generates at {trained[0]}×{trained[1]} (learned positional embeddings), but "
                f"{spec.family} is declared at {spec.native_size[0]}×{spec.native_size[1]}."
            )
