"""Model backends and how a model name picks one: the registry. One folder per family (``i2vgen_xl/``,
``cogvideox/``, ``wan/``, ``easyanimate/``, ``ltx2/``); what they share is written once: the backend interface
(``base``), the diffusers-pipeline backend (``pipeline_backend``), hub and folder helpers (``hub``), the per-component folder loader
(``folder_loader``), the built-in random-weight model shell (``builtin``) and the page's model menu (``catalog``).
A new family is a new folder plus its lines below."""
from __future__ import annotations

from pathlib import Path

from i2v.backends import cogvideox, easyanimate, i2vgen_xl, ltx2, wan
from i2v.backends.base import DenoiseInputs, LoadReport, ModelBackend, WithAudio
from i2v.backends.hub import looks_like_hub_id, pipeline_class_in
from i2v.errors import BadInputError, ModelLoadError

__all__ = ["BUILT_IN_MODELS", "DenoiseInputs", "LoadReport", "ModelBackend", "TEST_MODELS", "backend_for",
           "preset_keys", "registered_specs", "spec_for", "WithAudio"]

# Built here from code, random weights: nothing to download. The test models are toy-sized (seconds on a CPU,
# offered beside each other on the page); the full-size one is for GPU speed and memory figures only.
_TEST_MODELS: dict[str, type[ModelBackend]] = {
    i2vgen_xl.TINY_NAME: i2vgen_xl.TinyBackend,
    cogvideox.TINY_COGVIDEOX_NAME: cogvideox.TinyCogVideoXBackend,
    wan.TINY_WAN_NAME: wan.TinyWanBackend,
    easyanimate.TINY_EASYANIMATE_NAME: easyanimate.TinyEasyAnimateBackend,
    ltx2.TINY_LTX2_NAME: ltx2.TinyLTX2Backend,
}
_BUILT_IN: dict[str, type[ModelBackend]] = {
    **_TEST_MODELS, i2vgen_xl.FULL_SIZE_RANDOM_NAME: i2vgen_xl.FullSizeRandomBackend,
}
TEST_MODELS = tuple(_TEST_MODELS)
BUILT_IN_MODELS = tuple(_BUILT_IN)
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
    classes = list(_BY_PIPELINE.values()) + [wan.Wan720PBackend] + list(_BUILT_IN.values())
    return list(dict.fromkeys(cls.spec for cls in classes))


def preset_keys() -> set[str]:
    """Every ``[models.<key>]`` the preset files may hold: one per registered model family."""
    return {spec.preset_key for spec in registered_specs()}


def spec_for(model: str):
    """The constraints of ``model`` without loading it (and without touching the network)."""
    return backend_class_for(model).spec


def backend_class_for(model: str) -> type[ModelBackend]:
    if model in _BUILT_IN:
        return _BUILT_IN[model]
    path = Path(model).expanduser()
    if path.is_dir():
        # Decided from model_index.json before any weight is read; other pipelines are refused here.
        return _backend_for_folder(path)
    if looks_like_hub_id(model):
        # A hub id cannot be inspected offline; the repo name says which family it is.
        if "easyanimate" in model.lower():
            return easyanimate.EasyAnimateBackend
        if ltx2.is_ltx2_hub_id(model):  # "ltx-2" / "ltx2", not LTX-Video 0.9.x
            return ltx2.LTX2Backend
        if wan.is_wan_i2v_hub_id(model):  # "wan" as a word of its own and "i2v"
            return wan.wan_backend_class(model)
        return cogvideox.CogVideoXBackend if "cogvideox" in model.lower() else i2vgen_xl.I2VGenXLBackend
    raise BadInputError(
        f"Model '{model}' is neither one of {', '.join(repr(n) for n in _BUILT_IN)}, a local folder in diffusers "
        "layout, nor a hub id like 'ali-vilab/i2vgen-xl', 'THUDM/CogVideoX-5b-I2V', "
        "'alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers', 'Wan-AI/Wan2.1-I2V-14B-480P-Diffusers' or "
        "'Lightricks/LTX-2'."
    )


def _backend_for_folder(path: Path) -> type[ModelBackend]:
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


def backend_for(model: str) -> ModelBackend:
    cls = backend_class_for(model)
    return cls() if model in _BUILT_IN else cls(model)
