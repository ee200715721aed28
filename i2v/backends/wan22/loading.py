"""What a Wan 2.2 image-to-video folder holds and the checks run when it loads, before a weight is read where the
folder's files can tell: which of the two checkpoints it is (``folder_kind``), the accepted component classes, a
flow-matching scheduler, and components whose channels fit together.

TI2V-5B's diffusers folder declares ``WanPipeline`` (its text-to-video pipeline) with ``expand_timesteps`` true;
image-to-video runs the same components through ``WanImageToVideoPipeline(expand_timesteps=True)``, so both
classes are accepted for it. I2V-A14B declares ``WanImageToVideoPipeline`` with ``boundary_ratio`` and a
``transformer_2``. Wan 2.2 T2V-A14B (``WanPipeline`` with two experts) is refused by name."""
from __future__ import annotations

import json
from pathlib import Path

from i2v.backends import hub
from i2v.backends.folder_loader import load_components
from i2v.backends.wan22.spec import VAE_DTYPE, Wan22Spec
from i2v.errors import ModelLoadError

IMAGE_TO_VIDEO_PIPELINE = "WanImageToVideoPipeline"
TEXT_TO_VIDEO_PIPELINE = "WanPipeline"
PIPELINE_CLASSES = (IMAGE_TO_VIDEO_PIPELINE, TEXT_TO_VIDEO_PIPELINE)
# Sharded transformers and UMT5 weights (+ their index json), the tokenizer's SentencePiece file beside its json.
HUB_ALLOW_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model",
                      "*/diffusion_pytorch_model*.safetensors", "*/model*.safetensors"]
A14B_EXAMPLE = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
TI2V_EXAMPLE = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"

_TEXT = {
    "text_encoder": ("transformers", {"UMT5EncoderModel"}),
    "tokenizer": ("transformers", {"T5Tokenizer", "T5TokenizerFast"}),
}
_COMPONENTS = {
    "ti2v-5b": {"transformer": ("diffusers", {"WanTransformer3DModel"}), "vae": ("diffusers", {"AutoencoderKLWan"}),
                **_TEXT},
    "a14b": {"transformer": ("diffusers", {"WanTransformer3DModel"}),
             "transformer_2": ("diffusers", {"WanTransformer3DModel"}), "vae": ("diffusers", {"AutoencoderKLWan"}),
             **_TEXT},
}
_WEIGHTED = ("transformer", "transformer_2", "vae", "text_encoder")
# Scheduler class -> the config key of its flow shift. Both are flow-matching samplers, which Wan needs.
FLOW_SHIFT_KEYS = {"UniPCMultistepScheduler": "flow_shift", "FlowMatchEulerDiscreteScheduler": "shift"}


# -- which checkpoint a folder is -----------------------------------------------------------------------------
def names_a_class(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)


def index_kind(index: dict) -> str | None:
    """"a14b" (two experts), "t2v-a14b" (two experts, text-to-video pipeline), "ti2v-5b" (expand_timesteps) or
    None (not Wan 2.2: Wan 2.1 image- or text-to-video), from model_index.json alone."""
    if index.get("_class_name") not in PIPELINE_CLASSES:
        return None
    if names_a_class(index.get("transformer_2")) or index.get("boundary_ratio") is not None:
        return "a14b" if index.get("_class_name") == IMAGE_TO_VIDEO_PIPELINE else "t2v-a14b"
    if index.get("expand_timesteps"):
        return "ti2v-5b"
    return None


def folder_kind(folder: Path) -> str | None:
    """``index_kind`` of ``folder``'s model_index.json (None when it has none or it cannot be read)."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return index_kind(index) if isinstance(index, dict) else None


def refuse_text_to_video(folder: Path) -> None:
    raise ModelLoadError(
        f"{folder} is Wan 2.2 T2V-A14B, a text-to-video checkpoint ({TEXT_TO_VIDEO_PIPELINE} with two experts); "
        f"this app makes videos from a picture: use {A14B_EXAMPLE} (or {TI2V_EXAMPLE})."
    )


def read_model_index(folder: Path, kind: str) -> dict:
    declared = hub.pipeline_class_in(folder)
    index = hub.read_model_index(folder, declared if declared in PIPELINE_CLASSES else IMAGE_TO_VIDEO_PIPELINE,
                                 accepts=" (Wan 2.2 TI2V-5B or I2V-A14B)")
    found = index_kind(index)
    if found == "t2v-a14b":
        refuse_text_to_video(folder)
    if found != kind:
        wanted = {"ti2v-5b": f"Wan 2.2 TI2V-5B ({declared} with expand_timesteps true, like {TI2V_EXAMPLE})",
                  "a14b": f"Wan 2.2 I2V-A14B ({IMAGE_TO_VIDEO_PIPELINE} with boundary_ratio and transformer_2, like "
                          f"{A14B_EXAMPLE})"}[kind]
        raise ModelLoadError(f"{folder} is not {wanted}: its model_index.json says otherwise.")
    return index


# -- loading ------------------------------------------------------------------------------------------------
def load_wan22_from_folder(folder: Path, dtype: str, spec: Wan22Spec, kind: str):
    """Load every component from ``folder``; return (pipeline, warnings, component class names)."""
    import diffusers

    index = read_model_index(folder, kind)
    _refuse_mismatched_channels_before_loading(folder, kind)
    loaded, found, classes = load_components(folder, index, _COMPONENTS[kind], dtype, weighted=_WEIGHTED,
                                             dtypes={"vae": VAE_DTYPE})
    check_scheduler(loaded["scheduler"], folder)
    check_components_agree(loaded, spec, kind)
    extra = ({"expand_timesteps": True} if kind == "ti2v-5b"
             else {"boundary_ratio": _boundary_ratio(index, folder)})
    return diffusers.WanImageToVideoPipeline(**loaded, **extra), found, classes


def _boundary_ratio(index: dict, folder: Path) -> float:
    ratio = index.get("boundary_ratio")
    if not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
        raise ModelLoadError(
            f"{folder}/model_index.json: boundary_ratio is {ratio!r}; Wan 2.2 I2V-A14B switches from its high-noise "
            "to its low-noise expert at a ratio between 0 and 1 (0.9 in the released checkpoint)."
        )
    return float(ratio)


def _read_config(folder: Path, name: str) -> dict:
    try:
        config = json.loads((folder / name / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the loader reports a missing or broken component with its own message
    return config if isinstance(config, dict) else {}


def _refuse_mismatched_channels_before_loading(folder: Path, kind: str) -> None:
    """The commonest mix-up (a VAE from the other Wan, a transformer of another kind) named from the configs,
    before gigabytes of weights are read."""
    vae, transformer = _read_config(folder, "vae"), _read_config(folder, "transformer")
    z_dim, in_channels = vae.get("z_dim"), transformer.get("in_channels")
    if isinstance(z_dim, int) and isinstance(in_channels, int):
        check_channels(z_dim, in_channels, kind)


def check_channels(z_dim: int, in_channels: int, kind: str) -> None:
    if kind == "ti2v-5b" and in_channels != z_dim:
        raise ModelLoadError(
            f"The model's components do not fit together: the VAE has {z_dim} latent channels but the transformer "
            f"takes {in_channels} input channels; Wan 2.2 TI2V-5B needs them equal (48: the Wan 2.2 VAE). "
            f"Use the VAE and transformer of the same checkpoint ({TI2V_EXAMPLE})."
        )
    if kind == "a14b" and in_channels != 2 * z_dim + 4:
        if in_channels == z_dim:
            raise ModelLoadError(
                f"The transformer takes {in_channels} input channels, the VAE's {z_dim} latents alone: it is a "
                f"text-to-video transformer (Wan 2.2 T2V-A14B), not image-to-video. Use {A14B_EXAMPLE}."
            )
        raise ModelLoadError(
            f"The model's components do not fit together: the VAE has {z_dim} latent channels, so the transformer "
            f"must take 2 × {z_dim} + 4 = {2 * z_dim + 4} input channels (noise latents + picture latents + 4 mask "
            f"channels), but it takes {in_channels}. Use the VAE and transformers of the same checkpoint "
            f"({A14B_EXAMPLE})."
        )


def check_scheduler(scheduler, folder: Path) -> None:
    """Wan predicts a flow (velocity); a noise-prediction schedule would denoise into garbage without an error."""
    name = type(scheduler).__name__
    if name not in FLOW_SHIFT_KEYS:
        raise ModelLoadError(
            f"{folder}: scheduler {name} does not work with Wan; expected one of {', '.join(sorted(FLOW_SHIFT_KEYS))}."
        )
    config = scheduler.config
    if name == "UniPCMultistepScheduler" and not (
            config.prediction_type == "flow_prediction" and config.use_flow_sigmas):
        raise ModelLoadError(
            f"{folder}: the UniPCMultistepScheduler is set up for {config.prediction_type!r} (flow sigmas "
            f"{config.use_flow_sigmas}); Wan needs prediction_type 'flow_prediction' with use_flow_sigmas true."
        )


def check_components_agree(components: dict, spec: Wan22Spec, kind: str) -> None:
    """Shape mistakes fail late and confusingly inside the first transformer call; catch them at load time."""
    vae = components["vae"].config
    experts = [components[name].config for name in ("transformer", "transformer_2") if name in components]
    for transformer in experts:
        check_channels(vae.z_dim, transformer.in_channels, kind)
        checks = [
            ("VAE latent channels", vae.z_dim, "transformer output channels", transformer.out_channels),
            ("text encoder hidden size", components["text_encoder"].config.d_model, "transformer text_dim",
             transformer.text_dim),
        ]
        for left_name, left, right_name, right in checks:
            if left != right:
                raise ModelLoadError(
                    f"The model's components do not fit together: {left_name} is {left} but {right_name} is "
                    f"{right}."
                )
        if transformer.image_dim is not None:
            raise ModelLoadError(
                f"The transformer takes a CLIP image embedding (image_dim {transformer.image_dim}): it is a Wan 2.1 "
                f"image-to-video transformer, not Wan 2.2; load it as Wan 2.1 (e.g. "
                "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers)."
            )
    if len(experts) == 2 and tuple(experts[0].patch_size) != tuple(experts[1].patch_size):
        raise ModelLoadError("The two experts have different patch sizes: they are not from the same checkpoint.")
    for name, count in (("latents_mean", len(vae.latents_mean)), ("latents_std", len(vae.latents_std))):
        if count != vae.z_dim:
            raise ModelLoadError(
                f"The model's components do not fit together: VAE latent channels is {vae.z_dim} but VAE {name} "
                f"has {count} entries."
            )
    _check_variant(experts[0], vae, spec)


def _check_variant(transformer, vae, spec: Wan22Spec) -> None:
    """The spec was declared before loading; refuse a checkpoint whose shape rules differ from it."""
    temporal = 2 ** sum(bool(step) for step in vae.temperal_downsample)
    spatial = 2 ** (len(vae.dim_mult) - 1) * (vae.patch_size or 1)
    if (vae.scale_factor_temporal, vae.scale_factor_spatial) != (temporal, spatial):
        raise ModelLoadError(
            f"The VAE's config declares {vae.scale_factor_temporal}× time and {vae.scale_factor_spatial}× space "
            f"compression but its layers compress {temporal}× and {spatial}×: the VAE config is inconsistent."
        )
    if vae.z_dim != spec.latent_channels or spatial != spec.vae_scale_factor or temporal != spec.frame_rule.step:
        raise ModelLoadError(
            f"The VAE has {vae.z_dim} latent channels at 1/{spatial} size and {temporal}× time compression; "
            f"{spec.family} expects {spec.latent_channels} at 1/{spec.vae_scale_factor} and {spec.frame_rule.step}× "
            "(4N+1 frames). This is not the checkpoint the model name implies."
        )
    patch = tuple(transformer.patch_size)
    if patch[0] != 1 or patch[1] != patch[2] or spatial * patch[1] != spec.size_multiple:
        raise ModelLoadError(
            f"The transformer's patch size is {patch}; {spec.family} expects (1, 2, 2) with a "
            f"1/{spec.vae_scale_factor} VAE (sides multiple of {spec.size_multiple})."
        )
