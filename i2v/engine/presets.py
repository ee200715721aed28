"""Preset tiers, one TOML file each under ``presets/tiers/``. Validated strictly when loaded: an unknown key,
a wrong type or an out-of-range value is a ``DataFileError`` that names the file and the key.

A tier means the same thing for every model ("a quick look", "the everyday setting", "the final render"), but
not the same numbers: CogVideoX is trained on 49 frames at guidance 6, Wan on 81 frames at 16 fps. The top-level
values are I2VGen-XL's; a ``[models.<key>]`` table overrides any of them (and the description) for the models
whose spec has that ``preset_key``. An unknown model key fails the load, like any unknown key."""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from i2v.errors import BadInputError, DataFileError, shown
from i2v.paths import presets_dir

DEFAULT_PRESET = "balanced"

# key -> (type, lowest, highest). Bounds are sanity limits for any model; each model narrows them further.
_NUMERIC_KEYS: dict[str, tuple[type, float, float]] = {
    "resolution": (int, 64, 2048),
    "frames": (int, 1, 256),
    "steps": (int, 1, 500),
    "guidance": (float, 0.0, 50.0),
    "fps": (int, 1, 60),
}
_TEXT_KEYS = {"label", "description"}
_REQUIRED = set(_NUMERIC_KEYS) | _TEXT_KEYS | {"order"}
_OPTIONAL = {"models_only"}  # true: the tier is offered only to the models with a [models.<key>] table in it
_MODELS_TABLE = "models"
# A step-distilled tier names the LoRA it needs, its strength and the sampler shift it was distilled with.
# Wan 2.2 I2V-A14B's distilled LoRAs come as one file per expert: lora_high and lora_low instead of lora.
_DISTILLED_KEYS = {"lora": str, "lora_high": str, "lora_low": str, "lora_strength": float, "flow_shift": float,
                   "sigmas": str}
# A two-stage tier (LTX-2's high quality) names the ×2 latent upsampler that runs between its stages and the LoRA
# its refinement stage needs (active in that stage only).
_TWO_STAGE_KEYS = {"upsampler": str, "refine_lora": str}
_TEXT_MODEL_KEYS = {"description"} | {key for key, kind in {**_DISTILLED_KEYS, **_TWO_STAGE_KEYS}.items() if kind is str}
_MODEL_KEYS = set(_NUMERIC_KEYS) | {"description"} | set(_DISTILLED_KEYS) | set(_TWO_STAGE_KEYS)  # [models.<key>]


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    order: int
    resolution: int
    frames: int
    steps: int
    guidance: float
    fps: int
    models_only: bool = False  # offered only to the models with their own table in the file
    lora: str | None = None  # the step-distilled LoRA the tier needs (a hub file or a name in the LoRA folder)
    lora_high: str | None = None  # … or one per expert (Wan 2.2 I2V-A14B): the high-noise expert's
    lora_low: str | None = None  # … and the low-noise expert's
    lora_strength: float = 1.0
    flow_shift: float | None = None  # the sampler shift the LoRA was distilled with (None: the model's own)
    sigmas: str | None = None  # a fixed sigma schedule of the model's (``ModelSpec.fixed_schedules``), e.g. "distilled"
    upsampler: str | None = None  # two stages around this ×2 latent upsampler (a hub folder or a built-in part)
    refine_lora: str | None = None  # the LoRA the second stage needs (a hub file or a name in the LoRA folder)
    # preset key -> the values that model family uses instead (see the module docstring)
    per_model: dict[str, dict[str, object]] = field(default_factory=dict, compare=False, repr=False)

    def for_model(self, preset_key: str) -> Preset:
        """This tier's values for the models whose spec has ``preset_key`` (itself when it has no overrides)."""
        overrides = self.per_model.get(preset_key)
        return replace(self, per_model={}, **overrides) if overrides else self

    def offered_to(self, preset_key: str) -> bool:
        return not self.models_only or preset_key in self.per_model

    @property
    def two_stage(self) -> bool:
        return self.upsampler is not None

    def to_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "per_model"}


def load_preset_file(path: Path) -> Preset:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read preset file ({exc}).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"{path}: not valid TOML ({exc}).") from exc

    per_model = _per_model_values(path, data.pop(_MODELS_TABLE, {}))
    models_only = data.pop("models_only", False)
    if not isinstance(models_only, bool):
        raise DataFileError(f"{path}: models_only: must be true or false.")
    unknown = sorted(set(data) - _REQUIRED)
    if unknown:
        allowed = ", ".join(sorted(_REQUIRED | _OPTIONAL | {_MODELS_TABLE}))
        raise DataFileError(f"{path}: {unknown[0]}: unknown key (allowed: {allowed}).")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise DataFileError(f"{path}: {missing[0]}: required key is missing.")
    for key in _TEXT_KEYS:
        if not isinstance(data[key], str) or not data[key].strip():
            raise DataFileError(f"{path}: {key}: must be a non-empty string.")
    if not isinstance(data["order"], int) or isinstance(data["order"], bool):
        raise DataFileError(f"{path}: order: must be an integer.")
    values = {key: _check_number(path, key, data[key], *spec) for key, spec in _NUMERIC_KEYS.items()}
    return Preset(name=path.stem, label=data["label"], description=data["description"], order=data["order"],
                  per_model=per_model, models_only=models_only, **values)


def _per_model_values(path: Path, tables: object) -> dict[str, dict[str, object]]:
    from i2v.backends import preset_keys  # the registered model families (light: no model library imported)

    if not isinstance(tables, dict):
        raise DataFileError(f"{path}: {_MODELS_TABLE}: must be a table of [{_MODELS_TABLE}.<model key>] tables.")
    known = preset_keys()
    result: dict[str, dict[str, object]] = {}
    for key, values in tables.items():
        where = f"{_MODELS_TABLE}.{key}"
        if key not in known:
            raise DataFileError(f"{path}: {where}: unknown model key (known: {', '.join(sorted(known))}).")
        if not isinstance(values, dict):
            raise DataFileError(f"{path}: {where}: must be a table of values.")
        unknown = sorted(set(values) - _MODEL_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_MODEL_KEYS))
            raise DataFileError(f"{path}: {where}.{unknown[0]}: unknown key (allowed: {allowed}).")
        checked: dict[str, object] = {}
        for name, value in values.items():
            if name in _TEXT_MODEL_KEYS:
                if not isinstance(value, str) or not value.strip():
                    raise DataFileError(f"{path}: {where}.{name}: must be a non-empty string.")
                checked[name] = value
            elif name in _DISTILLED_KEYS:
                checked[name] = _check_number(path, f"{where}.{name}", value, float, 0.0, 20.0)
            else:
                checked[name] = _check_number(path, f"{where}.{name}", value, *_NUMERIC_KEYS[name])
        if ("lora_high" in checked) != ("lora_low" in checked) or ("lora" in checked and "lora_high" in checked):
            raise DataFileError(f"{path}: {where}: give lora (one LoRA for every expert) or both lora_high and "
                                "lora_low (one per expert of Wan 2.2 I2V-A14B).")
        if "refine_lora" in checked and "upsampler" not in checked:
            raise DataFileError(f"{path}: {where}.refine_lora: only a two-stage tier (one with an upsampler) has a "
                                "refinement stage to give a LoRA to.")
        result[key] = checked
    return result


def _check_number(path: Path, key: str, value: object, kind: type, lowest: float, highest: float):
    # TOML distinguishes 9 from 9.0; accept an integer where a float is expected, never the reverse.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataFileError(f"{path}: {key}: must be a number, got {value!r}.")
    if kind is int and not isinstance(value, int):
        raise DataFileError(f"{path}: {key}: must be a whole number, got {value!r}.")
    if not math.isfinite(value) or not lowest <= value <= highest:
        raise DataFileError(f"{path}: {key}: {value!r} is out of range ({lowest:g}..{highest:g}).")
    return kind(value)


def load_presets(directory: Path | None = None) -> dict[str, Preset]:
    """All presets in ``directory`` (default ``presets/tiers``), ordered by their ``order`` key."""
    directory = Path(directory) if directory is not None else presets_dir() / "tiers"
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise DataFileError(f"{directory}: no preset files (*.toml) found.")
    presets = [load_preset_file(f) for f in files]
    return {p.name: p for p in sorted(presets, key=lambda p: (p.order, p.name))}


@lru_cache(maxsize=1)
def default_presets() -> dict[str, Preset]:
    return load_presets()


def get_preset(name: str, presets: dict[str, Preset] | None = None, *, preset_key: str | None = None) -> Preset:
    """The tier ``name``; with ``preset_key``, its values for that model family."""
    presets = presets if presets is not None else default_presets()
    try:
        preset = presets[name]
    except KeyError:
        raise BadInputError(f"Unknown preset {shown(name)}; choose one of: {', '.join(presets)}.") from None
    if preset_key and not preset.offered_to(preset_key):
        offered = [p.name for p in presets.values() if p.offered_to(preset_key)]
        raise BadInputError(f"The {preset.name} tier is not offered for this model (it needs a step-distilled "
                            f"LoRA, and none is known for it); choose one of: {', '.join(offered)}.")
    return preset.for_model(preset_key) if preset_key else preset


def presets_for_model(presets: dict[str, Preset], preset_key: str) -> dict[str, Preset]:
    """The tiers a model is offered (a ``models_only`` tier only where the file has the model's table)."""
    return {name: preset.for_model(preset_key) for name, preset in presets.items() if preset.offered_to(preset_key)}
