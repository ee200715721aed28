"""The built-in models: random-weight twins of each family, built here from code (nothing to download), saved
once into our cache with ``save_pretrained`` and loaded back through the family's real folder loader, so every
run on them also exercises the real loading path. A family's built-in model is a few lines:

    class TinyWanBackend(BuiltInModel, WanBackend):
        spec = TINY_WAN_SPEC
        built_in_name = TINY_WAN_NAME
        real_model = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
        build_pipeline = staticmethod(build_tiny_pipeline)
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from i2v.findings import Finding
from i2v.paths import cache_dir

log = logging.getLogger(__name__)


def build_key() -> str:
    """Saved layouts differ across library versions (transformers ≥ 5.6 renamed text-encoder keys)."""
    import diffusers
    import transformers

    return f"v1-diffusers{diffusers.__version__}-transformers{transformers.__version__}"


def built_folder(name: str, build, marker: str = "model_index.json") -> Path:
    """The saved built-in model ``name``, made by ``build()`` (a pipeline, or one model whose folder holds
    ``marker``: its config.json) on first use. Written to a temporary folder and renamed, so a crash or a concurrent
    builder never leaves a half-written model behind."""
    folder = cache_dir() / f"{name}-{build_key()}"
    if (folder / marker).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=folder.parent))
    try:
        pipeline = build()
        with _no_progress_bars():  # transformers' "Writing model shards" bar would land in the CLI's output
            pipeline.save_pretrained(scratch)
        try:
            os.rename(scratch, folder)
        except OSError:
            if not (folder / marker).is_file():  # lost a race only if the winner finished
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    log.info("built the %s model in %s", name, folder)
    return folder


def byte_alphabet() -> list[str]:
    """The byte-level BPE alphabet (CLIP's and Qwen2's: 256 printable stand-ins for bytes), so any text
    tokenizes with the toy tokenizers."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def random_weights_warning(name: str, real_model: str, made_for: str = "made to test the app") -> Finding:
    return Finding(
        "model.random_weights",
        f"The '{name}' model has random weights: its videos are noise, {made_for}, not to look at.",
        f"Use --model {real_model} (or a local folder) for real videos.",
    )


class BuiltInModel:
    """Put before the family's backend in the bases: the family's loading, denoising and decoding, on a folder built
    here instead of one from the hub."""

    built_in_name: str
    real_model: str  # what to run for real videos, named in the warning every run carries
    made_for = "made to test the app"

    @staticmethod
    def build_pipeline():
        """The family's pipeline with random weights (the real classes)."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__(self.built_in_name)

    def _resolve_folder(self) -> tuple[Path, str, str | None]:
        folder = built_folder(self.built_in_name, self.build_pipeline)
        return folder, "built-in", f"{self.built_in_name}-{build_key()}"

    def _extra_warnings(self) -> tuple[Finding, ...]:
        return (random_weights_warning(self.built_in_name, self.real_model, self.made_for),)

    def count_tokens(self, text: str) -> int | None:
        # The toy tokenizers are character- or byte-level: their counts say nothing about the real model's limit.
        return None


@contextlib.contextmanager
def _no_progress_bars():
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()
