"""Preset tiers, one TOML file each under ``presets/tiers/``. Validated strictly when loaded: an unknown key,
a wrong type or an out-of-range value is a ``DataFileError`` that names the file and the key."""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import BadInputError, DataFileError
from .paths import presets_dir

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

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def load_preset_file(path: Path) -> Preset:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read preset file ({exc}).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"{path}: not valid TOML ({exc}).") from exc

    unknown = sorted(set(data) - _REQUIRED)
    if unknown:
        raise DataFileError(f"{path}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(_REQUIRED))}).")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise DataFileError(f"{path}: {missing[0]}: required key is missing.")
    for key in _TEXT_KEYS:
        if not isinstance(data[key], str) or not data[key].strip():
            raise DataFileError(f"{path}: {key}: must be a non-empty string.")
    if not isinstance(data["order"], int) or isinstance(data["order"], bool):
        raise DataFileError(f"{path}: order: must be an integer.")
    values = {key: _check_number(path, key, data[key], *spec) for key, spec in _NUMERIC_KEYS.items()}
    return Preset(name=path.stem, label=data["label"], description=data["description"], order=data["order"], **values)


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


def get_preset(name: str, presets: dict[str, Preset] | None = None) -> Preset:
    presets = presets if presets is not None else default_presets()
    try:
        return presets[name]
    except KeyError:
        raise BadInputError(f"Unknown preset '{name}'; choose one of: {', '.join(presets)}.") from None
