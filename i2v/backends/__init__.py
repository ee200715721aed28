"""Model backends and how a model name picks one."""
from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError
from .base import DenoiseInputs, LoadReport, ModelBackend
from .i2vgen_xl import I2VGenXLBackend, looks_like_hub_id, read_model_index
from .tiny import TINY_NAME, TinyBackend

__all__ = ["DenoiseInputs", "LoadReport", "ModelBackend", "backend_for", "spec_for"]


def spec_for(model: str):
    """The constraints of ``model`` without loading it (and without touching the network)."""
    return backend_class_for(model).spec


def backend_class_for(model: str) -> type[ModelBackend]:
    if model == TINY_NAME:
        return TinyBackend
    path = Path(model).expanduser()
    if path.is_dir():
        read_model_index(path)  # refuses folders that are not an I2VGen-XL pipeline, before any weight is read
        return I2VGenXLBackend
    if looks_like_hub_id(model):
        return I2VGenXLBackend
    raise BadInputError(
        f"Model '{model}' is neither '{TINY_NAME}', a local folder in diffusers layout, nor a hub id like "
        "'ali-vilab/i2vgen-xl'."
    )


def backend_for(model: str) -> ModelBackend:
    cls = backend_class_for(model)
    return cls() if cls is TinyBackend else cls(model)
