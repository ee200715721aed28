"""What an LTX-2 image-to-video folder holds and the checks run when it loads: the pipeline class in model_index.json
(an LTX 0.9.x folder, or another LTX-2 pipeline, is refused by name before a weight is read), the accepted component
classes, and components whose channels fit together: video VAE ↔ transformer, audio VAE ↔ transformer and vocoder,
Gemma ↔ text connectors ↔ transformer, and the VAE's compression against the spec's frame and size rules."""
from __future__ import annotations

import sys
from pathlib import Path

from i2v.errors import ModelLoadError
from i2v.backends import hub
from i2v.backends.folder_loader import load_components
from i2v.spec import ModelSpec

PIPELINE_CLASS = "LTX2ImageToVideoPipeline"
LTX2_MODULE = "diffusers.pipelines.ltx2"  # the connectors and the vocoder are not exported at diffusers' top level

# Component -> (library module, accepted class names). Anything else in model_index.json is refused, not imported.
# The optional prompt enhancer, its processor and LTX-2.5's duration head are not loaded (we pass the frame count).
_COMPONENTS = {
    "transformer": ("diffusers", {"LTX2VideoTransformer3DModel"}),
    "vae": ("diffusers", {"AutoencoderKLLTX2Video"}),
    "audio_vae": ("diffusers", {"AutoencoderKLLTX2Audio"}),
    "vocoder": (LTX2_MODULE, {"LTX2Vocoder"}),
    "connectors": (LTX2_MODULE, {"LTX2TextConnectors"}),
    "text_encoder": ("transformers", {"Gemma3ForConditionalGeneration"}),
    "tokenizer": ("transformers", {"GemmaTokenizer", "GemmaTokenizerFast"}),
}
_WEIGHTED = ("transformer", "vae", "audio_vae", "vocoder", "connectors", "text_encoder")
# Only the folders of the components above (the hub repo also holds single-file checkpoints and other pipelines').
HUB_ALLOW_PATTERNS = ["model_index.json", "scheduler/*"] + [f"{name}/*" for name in _COMPONENTS]

# What a mistaken pipeline class is, for the refusal.
_HINTS = {
    "LTXImageToVideoPipeline": " (LTX-Video 0.9.x image-to-video, the first LTX generation: not LTX-2)",
    "LTXConditionPipeline": " (LTX-Video 0.9.x conditioning, the first LTX generation: not LTX-2)",
    "LTXPipeline": " (LTX-Video 0.9.x text-to-video, the first LTX generation: not LTX-2)",
    "LTX2Pipeline": " (LTX-2 text-to-video: load the checkpoint as image-to-video)",
    "LTX2ConditionPipeline": " (LTX-2 conditioning)",
}
_ACCEPTS = " (Lightricks/LTX-2 in diffusers layout)"


def ltx2_module():
    """diffusers' LTX-2 pipeline module. diffusers 0.42.1 imports ``Gemma4UnifiedForConditionalGeneration`` from
    transformers there for a type annotation only (LTX-2.5's text encoder); our transformers pin (5.5.4, for
    I2VGen-XL) predates that class, so the import fails. We give transformers a placeholder class under that name,
    which no loaded model can be an instance of: LTX-2.0's Gemma 3 is what we accept (``_COMPONENTS``)."""
    from transformers import Gemma3ForConditionalGeneration, GemmaTokenizer, ProcessorMixin  # noqa: F401

    # Importing transformers' names may replace its lazy module in sys.modules: set the name on the final one.
    transformers = sys.modules["transformers"]
    if not hasattr(transformers, "Gemma4UnifiedForConditionalGeneration"):
        transformers.Gemma4UnifiedForConditionalGeneration = type(
            "Gemma4UnifiedForConditionalGeneration", (), {"__doc__": "Not in this transformers version."})
    import diffusers.pipelines.ltx2 as module

    return module


def read_model_index(folder: Path) -> dict:
    return hub.read_model_index(folder, PIPELINE_CLASS, hint=_HINTS, accepts=_ACCEPTS)


def load_ltx2_from_folder(folder: Path, dtype: str, spec: ModelSpec):
    """Load every component from ``folder``; return (pipeline, warnings, component class names)."""
    index = read_model_index(folder)
    module = ltx2_module()
    loaded, found, classes = load_components(folder, index, _COMPONENTS, dtype, weighted=_WEIGHTED)
    check_scheduler(loaded["scheduler"], folder)
    check_components_agree(loaded, spec)
    return module.LTX2ImageToVideoPipeline(**loaded), found, classes


def check_scheduler(scheduler, folder: Path) -> None:
    """The pipeline steps with sigmas and a resolution-dependent shift (``mu``): a flow-matching Euler schedule."""
    if type(scheduler).__name__ != "FlowMatchEulerDiscreteScheduler":
        raise ModelLoadError(
            f"{folder}: scheduler {type(scheduler).__name__} does not work with LTX-2; expected "
            "FlowMatchEulerDiscreteScheduler."
        )


def check_components_agree(components: dict, spec: ModelSpec) -> None:
    """Channel counts that must match between components; each mismatch names both numbers."""
    transformer = components["transformer"].config
    vae = components["vae"]
    audio_vae = components["audio_vae"].config
    vocoder = components["vocoder"].config
    connectors = components["connectors"].config
    text = components["text_encoder"].config.text_config
    _check_compression(vae, spec)
    patch = transformer.patch_size**2 * transformer.patch_size_t
    audio_tokens = audio_vae.latent_channels * (audio_vae.mel_bins // components["audio_vae"].mel_compression_ratio)
    checks = [
        ("VAE latent channels × transformer patch", vae.config.latent_channels * patch,
         "transformer in_channels", transformer.in_channels),
        ("VAE latent channels × transformer patch", vae.config.latent_channels * patch,
         "transformer out_channels", transformer.out_channels or transformer.in_channels),
        ("audio VAE latent channels × latent mel bins", audio_tokens,
         "transformer audio_in_channels", transformer.audio_in_channels),
        ("audio VAE output channels × mel bins", audio_vae.output_channels * audio_vae.mel_bins,
         "vocoder in_channels", vocoder.in_channels),
        ("audio VAE sample rate", audio_vae.sample_rate, "transformer audio_sampling_rate",
         transformer.audio_sampling_rate),
        ("audio VAE mel hop length", audio_vae.mel_hop_length, "transformer audio_hop_length",
         transformer.audio_hop_length),
        ("text encoder hidden size", text.hidden_size, "text connectors caption_channels",
         connectors.caption_channels),
        ("text encoder layers + 1", text.num_hidden_layers + 1, "text connectors text_proj_in_factor",
         connectors.text_proj_in_factor),
    ]
    if not connectors.per_modality_projections:  # LTX-2.0: the transformer projects the connectors' output itself
        checks.append(("text connectors caption_channels", connectors.caption_channels,
                       "transformer caption_channels", transformer.caption_channels))
    for left_name, left, right_name, right in checks:
        if left != right:
            raise ModelLoadError(
                f"The model's components do not fit together: {left_name} is {left} but {right_name} is {right}."
            )
    if spec.latent_channels != vae.config.latent_channels:
        raise ModelLoadError(
            f"The VAE has {vae.config.latent_channels} latent channels; {spec.family} expects "
            f"{spec.latent_channels}. This is not an LTX-2 checkpoint."
        )


def _check_compression(vae, spec: ModelSpec) -> None:
    """The compression the VAE's config declares (what the pipeline sizes its latents by) must be what its layers do
    and what the spec's rules (8N+1 frames, sides multiple of 32) assume."""
    config = vae.config
    spatial = config.patch_size * 2 ** sum(kind in ("spatial", "spatiotemporal") for kind in config.downsample_type)
    temporal = config.patch_size_t * 2 ** sum(kind in ("temporal", "spatiotemporal")
                                              for kind in config.downsample_type)
    declared = (vae.spatial_compression_ratio, vae.temporal_compression_ratio)
    if declared != (spatial, temporal):
        raise ModelLoadError(
            f"The VAE's config declares {declared[0]}× space and {declared[1]}× time compression but its layers "
            f"compress {spatial}× and {temporal}×: the VAE config is inconsistent."
        )
    if spatial != spec.size_multiple or temporal != spec.frame_rule.step:
        raise ModelLoadError(
            f"The VAE compresses {spatial}× in space and {temporal}× in time; {spec.family} expects "
            f"{spec.size_multiple}× and {spec.frame_rule.step}× (sides multiple of {spec.size_multiple}, "
            f"{spec.frame_rule.describe()} frames)."
        )
