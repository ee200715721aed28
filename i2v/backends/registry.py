"""The registry: which backend runs a model name (built-in, folder or hub id), and every family's id.
A new family is a new folder under ``backends/`` plus its lines here."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from i2v.backends import cogvideox, easyanimate, i2vgen_xl, ltx2, wan, wan22
from i2v.backends.base import ModelBackend
from i2v.backends.hub import looks_like_hub_id, pipeline_class_in
from i2v.errors import BadInputError, ModelLoadError

# Built here from code, random weights: nothing to download. The test models are toy-sized (seconds on a CPU,
# offered beside each other on the page); the full-size one is for GPU speed and memory figures only.
_TEST_MODELS: dict[str, type[ModelBackend]] = {
    i2vgen_xl.TINY_NAME: i2vgen_xl.TinyBackend,
    cogvideox.TINY_COGVIDEOX_NAME: cogvideox.TinyCogVideoXBackend,
    wan.TINY_WAN_NAME: wan.TinyWanBackend,
    wan22.TINY_TI2V_NAME: wan22.TinyWan22TI2VBackend,
    wan22.TINY_A14B_NAME: wan22.TinyWan22A14BBackend,
    easyanimate.TINY_EASYANIMATE_NAME: easyanimate.TinyEasyAnimateBackend,
    ltx2.TINY_LTX2_NAME: ltx2.TinyLTX2Backend,
}
_BUILT_IN: dict[str, type[ModelBackend]] = {
    **_TEST_MODELS, i2vgen_xl.FULL_SIZE_RANDOM_NAME: i2vgen_xl.FullSizeRandomBackend,
}
# Parts a tier can name beside a built-in model (its two-stage upsampler), built here like the models themselves:
# name -> the function that returns their saved folder (building it on first use).
BUILT_IN_PARTS = {ltx2.TINY_UPSAMPLER_NAME: ltx2.tiny_upsampler_folder}
TEST_MODELS = tuple(_TEST_MODELS)
BUILT_IN_MODELS = tuple(_BUILT_IN)
# Every real model family, by the id ``--family`` takes (a fine-tune whose name says nothing is named by its folder's
# model_index.json, the Hugging Face cache's copy of it, or this id).
FAMILIES: dict[str, type[ModelBackend]] = {
    "i2vgen-xl": i2vgen_xl.I2VGenXLBackend,
    "cogvideox-i2v": cogvideox.CogVideoXBackend,
    "wan2.1-i2v-480p": wan.WanBackend,
    "wan2.1-i2v-720p": wan.Wan720PBackend,
    "wan2.2-ti2v-5b": wan22.Wan22TI2VBackend,
    "wan2.2-i2v-a14b": wan22.Wan22A14BBackend,
    "easyanimate-v5.1": easyanimate.EasyAnimateBackend,
    "ltx2": ltx2.LTX2Backend,
}
# model_index.json "_class_name" -> the backend that loads that pipeline.
_BY_PIPELINE: dict[str, type[ModelBackend]] = {
    i2vgen_xl.PIPELINE_CLASS: i2vgen_xl.I2VGenXLBackend,
    cogvideox.PIPELINE_CLASS: cogvideox.CogVideoXBackend,
    easyanimate.PIPELINE_CLASS: easyanimate.EasyAnimateBackend,
    wan.PIPELINE_CLASS: wan.WanBackend,
    ltx2.PIPELINE_CLASS: ltx2.LTX2Backend,
}


def registered_specs() -> list:
    """The spec of every registered backend: each real family and each built-in test model."""
    classes = list(FAMILIES.values()) + list(_BUILT_IN.values())
    return list(dict.fromkeys(cls.spec for cls in classes))


def preset_keys() -> set[str]:
    """Every ``[models.<key>]`` the preset files may hold: one per registered model family."""
    return {spec.preset_key for spec in registered_specs()}


@dataclass(frozen=True)
class Identified:
    """Which backend runs ``model``, its family id, and how that was known (shown by ``plan``)."""

    backend: type[ModelBackend]
    family: str
    how: str


def spec_for(model: str, family: str | None = None):
    """The constraints of ``model`` without loading it (and without touching the network)."""
    return identify(model, family).backend.spec


def backend_class_for(model: str, family: str | None = None) -> type[ModelBackend]:
    return identify(model, family).backend


def identify(model: str, family: str | None = None) -> Identified:
    """The model's family from what is known for certain: a built-in name, a folder's model_index.json, the Hugging
    Face cache's copy of it for a hub id, ``family`` when given, or a name rule that cannot be mistaken. Anything else
    is refused: an architecture is never guessed."""
    if model in _BUILT_IN:
        if family is not None:
            raise BadInputError(f"'{model}' is a built-in model: it has no --family to choose.")
        return Identified(_BUILT_IN[model], model, "built-in model")
    given = _family_backend(family) if family is not None else None
    path = Path(model).expanduser()
    if path.is_dir():
        # Decided from model_index.json before any weight is read; other pipelines are refused here.
        return _agreeing(model, _backend_for_folder(path), given, "the folder's model_index.json")
    if not looks_like_hub_id(model):
        raise BadInputError(
            f"Model '{model}' is neither one of {', '.join(repr(n) for n in _BUILT_IN)}, a local folder in diffusers "
            "layout, nor a hub id (owner/name) such as 'ali-vilab/i2vgen-xl' or "
            "'Wan-AI/Wan2.1-I2V-14B-480P-Diffusers'."
        )
    cached = _cached_snapshot(model)
    if cached is not None:
        return _agreeing(model, _backend_for_folder(cached), given, "model_index.json in the Hugging Face cache")
    if given is not None:
        return Identified(given, family, "--family")
    named = _family_by_name(model)
    if named is not None:
        return Identified(FAMILIES[named], named, "its name")
    raise BadInputError(
        f"Cannot tell which model family '{model}' is: it is not in the local Hugging Face cache and its name matches "
        f"no known family. Known families: {', '.join(FAMILIES)}. Name it with --family FAMILY (e.g. "
        f"--family wan2.1-i2v-480p for a Wan 2.1 fine-tune), or download it first "
        f"(./start_app.sh download {model} --family FAMILY), after which its model_index.json tells."
    )


def family_id(backend: type[ModelBackend]) -> str:
    return next((key for key, cls in FAMILIES.items() if cls is backend), backend.spec.family)


def _family_backend(family: str) -> type[ModelBackend]:
    if family not in FAMILIES:
        raise BadInputError(f"Unknown model family '{family}'. Known families: {', '.join(FAMILIES)}.")
    return FAMILIES[family]


def _agreeing(model: str, found: type[ModelBackend], given: type[ModelBackend] | None, how: str) -> Identified:
    if given is not None and given is not found:
        raise BadInputError(
            f"'{model}' is {found.spec.family} by its {how.replace('the ', '', 1)}, but --family says "
            f"{given.spec.family}: leave --family out, or check the model."
        )
    return Identified(found, family_id(found), how)


def _family_by_name(model: str) -> str | None:
    """Only names that cannot mistake one family for another; anything else must be in the cache or given
    --family."""
    name = model.lower()
    kind = wan22.wan22_kind(model)  # "Wan2.2" as a word, then TI2V or I2V (before Wan 2.1's "wan" + "i2v")
    if kind == "t2v":
        raise BadInputError(
            f"'{model}' is Wan 2.2 text-to-video; this app makes videos from a picture: use "
            "Wan-AI/Wan2.2-I2V-A14B-Diffusers or Wan-AI/Wan2.2-TI2V-5B-Diffusers."
        )
    if kind is not None:
        return family_id(wan22.BACKENDS[kind])
    if "i2vgen-xl" in name or "i2vgen_xl" in name:
        return "i2vgen-xl"
    if "cogvideox" in name and "i2v" in name:
        return "cogvideox-i2v"
    if wan.is_wan_i2v_hub_id(name) and re.search(r"wan[-_]?2[._-]?1(?!\d)", name):
        # The 480P and 720P checkpoints differ only in their weights: the name tells which.
        return family_id(wan.wan_backend_class(name))
    if "easyanimate" in name and "inp" in name:
        return "easyanimate-v5.1"
    if ltx2.is_ltx2_hub_id(model):  # "ltx-2" / "ltx2", not LTX-Video 0.9.x
        return "ltx2"
    return None


def _cached_snapshot(model: str) -> Path | None:
    """The hub model's snapshot folder when its model_index.json is in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = model.partition("@")
    found = try_to_load_from_cache(repo_id, "model_index.json", revision=revision or None)
    return Path(found).parent if isinstance(found, str) else None


def _backend_for_folder(path: Path) -> type[ModelBackend]:
    kind = wan22.folder_kind(path)  # Wan 2.2 folders declare Wan 2.1's pipeline classes: their index tells them apart
    if kind == "t2v-a14b":
        wan22.refuse_text_to_video(path)
    if kind is not None:
        return wan22.BACKENDS[kind]
    declared = pipeline_class_in(path)
    if declared not in _BY_PIPELINE:
        raise ModelLoadError(
            f"{path} holds a {declared!r} pipeline; supported are {', '.join(sorted(_BY_PIPELINE))}."
        )
    backend = _BY_PIPELINE[declared]
    if backend is wan.WanBackend:  # the 480P and 720P checkpoints differ only in their weights: the name tells
        parts = path.resolve().parts
        # A Hugging Face cache snapshot (models--Wan-AI--…-720P-Diffusers/snapshots/<hash>) is named by its repo.
        name = parts[-3] if len(parts) >= 3 and parts[-2] == "snapshots" else parts[-1]
        return wan.wan_backend_class(name)
    return backend


def last_frame_models() -> list[str]:
    """The models that take a last frame (``GenerationRequest.last_image``): real ones by hub id, then the built-in
    test models."""
    real = [cls.example_hub_id for cls in FAMILIES.values() if cls.spec.takes_last_image]
    return real + [name for name, cls in _BUILT_IN.items() if cls.spec.takes_last_image]


def lora_models() -> list[str]:
    """The models that take LoRAs (``GenerationRequest.loras``): real ones by hub id, then the built-in test models."""
    real = [cls.example_hub_id for cls in FAMILIES.values() if cls.spec.takes_loras]
    return real + [name for name, cls in _BUILT_IN.items() if cls.spec.takes_loras]


def backend_for(model: str, family: str | None = None, transformer_file: str | None = None) -> ModelBackend:
    cls = backend_class_for(model, family)
    backend = cls() if model in _BUILT_IN else cls(model)
    if transformer_file is not None:
        check_takes_transformer_file(model, family)
        backend.transformer_file = transformer_file
    return backend


def check_takes_transformer_file(model: str, family: str | None = None) -> None:
    """Refuse a GGUF transformer for a model whose loader cannot take one, naming those that can."""
    if getattr(backend_class_for(model, family), "takes_transformer_file", False):
        return
    takes = [name for name, cls in {**FAMILIES, **_BUILT_IN}.items() if getattr(cls, "takes_transformer_file", False)]
    raise BadInputError(
        f"'{model}' cannot take a transformer file (a GGUF): diffusers loads single-file transformers only for some "
        f"families. Models that take one: {', '.join(takes)}."
    )
