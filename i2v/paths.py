"""Where the project's data files and outputs live. Overridable by environment for tests and deployments."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def presets_dir() -> Path:
    return Path(os.environ.get("I2V_PRESETS_DIR", REPO_ROOT / "presets"))


def outputs_dir() -> Path:
    return Path(os.environ.get("I2V_OUTPUT_DIR", REPO_ROOT / "outputs"))


def logs_dir() -> Path:
    return REPO_ROOT / "logs"


def cache_dir() -> Path:
    """Our own cache (the built tiny model). Model weights go to the standard Hugging Face cache."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "i2v-studio"
    return Path(os.environ.get("I2V_CACHE_DIR", default))


def lora_dir() -> Path:
    """The app's LoRA folder: a LoRA given by file name alone is looked up here, and the page lists what it holds."""
    return Path(os.environ.get("I2V_LORA_DIR", cache_dir() / "loras")).expanduser()
