"""Model backends and how a model name picks one: the registry. One folder per family (``i2vgen_xl/``,
``cogvideox/``, ``wan/``, ``wan22/``, ``easyanimate/``); what they share is written once: the backend interface (``base``), the
diffusers-pipeline backend (``pipeline_backend``), hub and folder helpers (``hub``), the per-component folder loader
(``folder_loader``), the built-in random-weight model shell (``builtin``) and the page's model menu (``catalog``).
A new family is a new folder plus its lines below."""
from __future__ import annotations

from pathlib import Path

from i2v.backends import cogvideox, easyanimate, i2vgen_xl, wan, wan22
from i2v.backends.base import DenoiseInputs, LoadReport, ModelBackend
from i2v.backends.hub import looks_like_hub_id, pipeline_class_in
from i2v.errors import BadInputError, ModelLoadError

__all__ = ["BUILT_IN_MODELS", "DenoiseInputs", "LoadReport", "ModelBackend", "TEST_MODELS", "backend_for", "last_frame_models",
           "preset_keys", "registered_specs", "spec_for"]

# Built here from code, random weights: nothing to download. The test models are toy-sized (seconds on a CPU,
# offered beside each other on the page); the full-size one is for GPU speed and memory figures only.
_TEST_MODELS: dict[str, type[ModelBackend]] = {
    i2vgen_xl.TINY_NAME: i2vgen_xl.TinyBackend,
    cogvideox.TINY_COGVIDEOX_NAME: cogvideox.TinyCogVideoXBackend,
    wan.TINY_WAN_NAME: wan.TinyWanBackend,
    wan22.TINY_TI2V_NAME: wan22.TinyWan22TI2VBackend,
    wan22.TINY_A14B_NAME: wan22.TinyWan22A14BBackend,
    easyanimate.TINY_EASYANIMATE_NAME: easyanimate.TinyEasyAnimateBackend,
}
_BUILT_IN: dict[str, type[ModelBackend]] = {
    **_TEST_MODELS, i2vgen_xl.FULL_SIZE_RANDOM_NAME: i2vgen_xl.FullSizeRandomBackend,
}
TEST_MODELS = tuple(_TEST_MODELS)
BUILT_IN_MODELS = tuple(_BUILT_IN)
# model_index.json "_class_name" -> the backend that loads that pipeline. Wan 2.2 folders are told apart by their
# model_index.json first (``wan22.folder_kind``): they declare Wan 2.1's WanImageToVideoPipeline (I2V-A14B) or the
# text-to-video WanPipeline (TI2V-5B).
_BY_PIPELINE: dict[str, type[ModelBackend]] = {
    i2vgen_xl.PIPELINE_CLASS: i2vgen_xl.I2VGenXLBackend,
    cogvideox.PIPELINE_CLASS: cogvideox.CogVideoXBackend,
    easyanimate.PIPELINE_CLASS: easyanimate.EasyAnimateBackend,
    wan.PIPELINE_CLASS: wan.WanBackend,
}


def registered_specs() -> list:
    """The spec of every registered backend: each real family and each built-in test model."""
    classes = (list(_BY_PIPELINE.values()) + [wan.Wan720PBackend] + list(wan22.BACKENDS.values())
               + list(_BUILT_IN.values()))
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
        kind = wan22.wan22_kind(model)  # "Wan2.2" as a word, then TI2V or I2V (before Wan 2.1's "wan" + "i2v")
        if kind == "t2v":
            raise BadInputError(
                f"'{model}' is Wan 2.2 text-to-video; this app makes videos from a picture: use "
                "Wan-AI/Wan2.2-I2V-A14B-Diffusers or Wan-AI/Wan2.2-TI2V-5B-Diffusers."
            )
        if kind is not None:
            return wan22.BACKENDS[kind]
        if wan.is_wan_i2v_hub_id(model):  # "wan" as a word of its own and "i2v"
            return wan.wan_backend_class(model)
        return cogvideox.CogVideoXBackend if "cogvideox" in model.lower() else i2vgen_xl.I2VGenXLBackend
    raise BadInputError(
        f"Model '{model}' is neither one of {', '.join(repr(n) for n in _BUILT_IN)}, a local folder in diffusers "
        "layout, nor a hub id like 'ali-vilab/i2vgen-xl', 'THUDM/CogVideoX-5b-I2V', "
        "'alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers', 'Wan-AI/Wan2.1-I2V-14B-480P-Diffusers' or "
        "'Wan-AI/Wan2.2-TI2V-5B-Diffusers'."
    )


def _backend_for_folder(path: Path) -> type[ModelBackend]:
    kind = wan22.folder_kind(path)
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
    real = [cls.example_hub_id for cls in wan22.BACKENDS.values() if cls.spec.takes_last_image]
    return real + [name for name, cls in _BUILT_IN.items() if cls.spec.takes_last_image]


def backend_for(model: str) -> ModelBackend:
    cls = backend_class_for(model)
    return cls() if model in _BUILT_IN else cls(model)
