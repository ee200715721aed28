"""Which models the page offers. Only models that can run without a surprise: the configured one, the ones the
operator lists (``I2V_MODELS``), the known image-to-video checkpoints already in the local Hugging Face cache,
and, when the app runs a built-in test model, the other built-in test models.

A model that still needs a multi-GB download is not offered: picking it from a dropdown would start a download
of 10-70 GB inside a job. ``./start_app.sh download ID`` fetches it; it is offered from the next start on.
Every offered name is checked against the registered backends at start-up, so a typo fails the start, not a job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from i2v.backends import BUILT_IN_MODELS, TEST_MODELS, spec_for
from i2v.errors import BadInputError
from i2v.spec import ModelSpec

log = logging.getLogger(__name__)

# Image-to-video checkpoints in diffusers layout that the backends load; offered once they are in the cache.
KNOWN_HUB_MODELS: tuple[str, ...] = (
    "ali-vilab/i2vgen-xl",
    "THUDM/CogVideoX-5b-I2V",
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    "alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers",
    "Lightricks/LTX-2",
)


@dataclass(frozen=True)
class ModelOption:
    name: str  # what requests carry: hub id, folder or built-in name
    spec: ModelSpec
    source: str  # "configured" | "listed" | "cached" | "built-in"

    @property
    def label(self) -> str:
        return f"{self.name} — {self.spec.family}"


def in_hub_cache(repo_id: str) -> bool:
    """Whether ``repo_id`` has a snapshot in the local Hugging Face cache (offline check, no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json")
    return isinstance(found, str) and Path(found).is_file()


def offered_models(configured: str, listed: Iterable[str] = (), *,
                   cached: Callable[[str], bool] = in_hub_cache) -> dict[str, ModelOption]:
    """Name → option, the configured model first. A listed name no backend can load raises ``BadInputError``."""
    options: dict[str, ModelOption] = {}

    def offer(name: str, source: str) -> None:
        if name not in options:
            options[name] = ModelOption(name, spec_for(name), source)

    offer(configured, "configured")
    for name in listed:
        try:
            offer(name, "listed")
        except BadInputError as exc:
            raise BadInputError(f"I2V_MODELS: {exc}") from None
    for repo_id in KNOWN_HUB_MODELS:
        if repo_id not in options and cached(repo_id):
            offer(repo_id, "cached")
    if configured in BUILT_IN_MODELS:
        # Trying the app without weights: the other test models show the other families' rules.
        for name in TEST_MODELS:
            offer(name, "built-in")
    log.info("models offered: %s", ", ".join(f"{o.name} ({o.source})" for o in options.values()))
    return options

