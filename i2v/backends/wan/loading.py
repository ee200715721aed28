"""What a Wan 2.1 image-to-video folder holds and the checks run when it loads: the pipeline class in
model_index.json, the accepted component classes, a flow-matching scheduler, and components whose shapes fit
together and match the spec the model name implies (480P or 720P). Wan 2.2 and first-last-frame checkpoints share
the pipeline class and are refused by name here, before a weight is read."""
from __future__ import annotations

from pathlib import Path

from i2v.errors import ModelLoadError
from i2v.backends import hub
from i2v.backends.folder_loader import load_components
from i2v.backends.wan.spec import VAE_DTYPE, WanSpec

PIPELINE_CLASS = "WanImageToVideoPipeline"
# The transformer and the UMT5 text encoder are sharded (…-00001-of-00014.safetensors + an index json); the
# tokenizer ships a SentencePiece file beside tokenizer.json; the CLIP image processor is a json file.
HUB_ALLOW_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model",
                      "*/diffusion_pytorch_model*.safetensors", "*/model*.safetensors"]


# -- what a Wan 2.1 I2V folder holds ------------------------------------------------------------------------
# Component -> (library, accepted class names). Anything else in model_index.json is refused, not imported.
_COMPONENTS = {
    "transformer": ("diffusers", {"WanTransformer3DModel"}),
    "vae": ("diffusers", {"AutoencoderKLWan"}),
    "text_encoder": ("transformers", {"UMT5EncoderModel"}),
    "tokenizer": ("transformers", {"T5Tokenizer", "T5TokenizerFast"}),
    "image_encoder": ("transformers", {"CLIPVisionModel", "CLIPVisionModelWithProjection"}),
    "image_processor": ("transformers", {"CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPImageProcessorFast"}),
}
_WEIGHTED = ("transformer", "vae", "text_encoder", "image_encoder")
# Scheduler class -> the config key of its flow shift. Both are flow-matching samplers, which Wan needs.
FLOW_SHIFT_KEYS = {"UniPCMultistepScheduler": "flow_shift", "FlowMatchEulerDiscreteScheduler": "shift"}


def read_model_index(folder: Path) -> dict:
    index = hub.read_model_index(folder, PIPELINE_CLASS,
                                 hint={"WanPipeline": " (Wan text-to-video or Wan 2.2 TI2V-5B)"})
    _refuse_wan22(folder, index)
    return index


def _names_a_class(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)


def _refuse_wan22(folder: Path, index: dict) -> None:
    """Wan 2.2 I2V uses the same pipeline class with two transformers and no image encoder: refuse it by name
    before any weight is read, rather than failing on a missing component."""
    if (_names_a_class(index.get("transformer_2")) or index.get("boundary_ratio") is not None
            or index.get("expand_timesteps") or not _names_a_class(index.get("image_encoder"))):
        raise ModelLoadError(
            f"{folder} is a Wan 2.2 image-to-video checkpoint (two transformers or no CLIP image encoder); only "
            "Wan 2.1 image-to-video (Wan-AI/Wan2.1-I2V-14B-480P-Diffusers or -720P-Diffusers) is supported so far."
        )


def load_wan_from_folder(folder: Path, dtype: str, spec: WanSpec, *, transformer_file: str | None = None):
    """Load every component from ``folder`` (the transformer from ``transformer_file``, a GGUF, when given); return
    (pipeline, warnings, component class names)."""
    import diffusers

    gguf_files = {"transformer": transformer_file} if transformer_file else None
    loaded, found, classes = load_components(folder, read_model_index(folder), _COMPONENTS, dtype,
                                             weighted=_WEIGHTED, dtypes={"vae": VAE_DTYPE}, gguf_files=gguf_files)
    check_scheduler(loaded["scheduler"], folder)
    check_components_agree(loaded, spec)
    return diffusers.WanImageToVideoPipeline(**loaded), found, classes


def check_scheduler(scheduler, folder: Path) -> None:
    """Wan predicts a flow (velocity); a noise-prediction schedule would denoise into garbage without an error."""
    name = type(scheduler).__name__
    if name not in FLOW_SHIFT_KEYS:
        raise ModelLoadError(
            f"{folder}: scheduler {name} does not work with Wan; expected one of "
            f"{', '.join(sorted(FLOW_SHIFT_KEYS))}."
        )
    config = scheduler.config
    if name == "UniPCMultistepScheduler" and not (
            config.prediction_type == "flow_prediction" and config.use_flow_sigmas):
        raise ModelLoadError(
            f"{folder}: the UniPCMultistepScheduler is set up for {config.prediction_type!r} (flow sigmas "
            f"{config.use_flow_sigmas}); Wan needs prediction_type 'flow_prediction' with use_flow_sigmas true."
        )


def check_components_agree(components: dict, spec: WanSpec) -> None:
    """Shape mistakes fail late and confusingly inside the first transformer call; catch them at load time."""
    transformer, vae = components["transformer"].config, components["vae"].config
    mask_channels = vae.scale_factor_temporal  # one first-frame mask channel per frame folded into a latent frame
    expected = 2 * vae.z_dim + mask_channels
    if transformer.in_channels != expected:
        raise ModelLoadError(
            f"The model's components do not fit together: the VAE has {vae.z_dim} latent channels, so the "
            f"transformer must take 2 × {vae.z_dim} + {mask_channels} = {expected} input channels (noise latents + "
            f"picture latents + {mask_channels} first-frame mask channels), but it takes {transformer.in_channels}. "
            "Use a VAE and transformer from the same Wan 2.1 image-to-video checkpoint."
        )
    _check_variant(transformer, vae, spec)
    checks = [
        ("VAE latent channels", vae.z_dim, "transformer output channels", transformer.out_channels),
        ("VAE latent channels", vae.z_dim, "VAE latents_mean entries", len(vae.latents_mean)),
        ("VAE latent channels", vae.z_dim, "VAE latents_std entries", len(vae.latents_std)),
        ("text encoder hidden size", components["text_encoder"].config.d_model, "transformer text_dim",
         transformer.text_dim),
        # The pipeline feeds the image encoder's penultimate hidden states, not its projection.
        ("image encoder hidden size", components["image_encoder"].config.hidden_size, "transformer image_dim",
         transformer.image_dim),
    ]
    for left_name, left, right_name, right in checks:
        if left != right:
            raise ModelLoadError(
                f"The model's components do not fit together: {left_name} is {left} but {right_name} is {right}."
            )


def _check_variant(transformer, vae, spec: WanSpec) -> None:
    """The spec was declared before loading; refuse a checkpoint whose shape rules differ from it."""
    if transformer.image_dim is None:
        raise ModelLoadError(
            "This transformer takes no CLIP image embedding (a Wan 2.2 or text-to-video transformer); only Wan 2.1 "
            "image-to-video (e.g. Wan-AI/Wan2.1-I2V-14B-480P-Diffusers) is supported so far."
        )
    if transformer.pos_embed_seq_len is not None:
        raise ModelLoadError(
            "This is a Wan 2.1 first-last-frame (FLF2V) checkpoint: it needs two pictures; only Wan 2.1 "
            "image-to-video (e.g. Wan-AI/Wan2.1-I2V-14B-480P-Diffusers) is supported so far."
        )
    temporal = 2 ** sum(bool(step) for step in vae.temperal_downsample)
    spatial = 2 ** (len(vae.dim_mult) - 1)
    declared = (vae.scale_factor_temporal, vae.scale_factor_spatial)
    if declared != (temporal, spatial):
        raise ModelLoadError(
            f"The VAE's config declares {declared[0]}× time and {declared[1]}× space compression but its layers "
            f"compress {temporal}× and {spatial}×: the VAE config is inconsistent."
        )
    if vae.z_dim != spec.latent_channels or spatial != spec.vae_scale_factor or temporal != spec.frame_rule.step:
        raise ModelLoadError(
            f"The VAE has {vae.z_dim} latent channels at 1/{spatial} size and {temporal}× time compression; "
            f"{spec.family} expects {spec.latent_channels} at 1/{spec.vae_scale_factor} and {spec.frame_rule.step}× "
            "(4N+1 frames). This is not the checkpoint the model name implies."
        )
    patch = tuple(transformer.patch_size)
    if patch[0] != 1 or spatial * patch[1] != spec.size_multiple or patch[1] != patch[2]:
        raise ModelLoadError(
            f"The transformer's patch size is {patch}; {spec.family} expects (1, 2, 2) with a 1/8 VAE "
            f"(sides multiple of {spec.size_multiple})."
        )
