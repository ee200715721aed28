"""Model backends and how a model name picks one: the registry. One folder per family (``i2vgen_xl/``,
``cogvideox/``, ``wan/``, ``wan22/``, ``easyanimate/``, ``ltx2/``); what they share is written once: the backend interface (``base``), the
diffusers-pipeline backend (``pipeline_backend``), hub and folder helpers (``hub``), the per-component folder loader
(``folder_loader``), the built-in random-weight model shell (``builtin``) and the page's model menu (``catalog``).
A new family is a new folder plus its lines in ``registry.py``."""
from i2v.backends.base import DenoiseInputs, LoadReport, ModelBackend, WithAudio
from i2v.backends.registry import (BUILT_IN_MODELS, FAMILIES, TEST_MODELS, Identified, backend_class_for, backend_for,
                                   check_takes_transformer_file, identify, last_frame_models, lora_models,
                                   preset_keys,
                                   registered_specs, spec_for)

__all__ = ["BUILT_IN_MODELS", "DenoiseInputs", "FAMILIES", "Identified", "LoadReport", "ModelBackend", "TEST_MODELS",
           "backend_class_for", "backend_for", "check_takes_transformer_file", "identify", "last_frame_models",
           "lora_models",            "preset_keys", "registered_specs", "spec_for", "WithAudio"]
