"""The LoRA adapters loaded into the resident pipeline, kept between jobs by file content: a job with other LoRAs
loads only the new ones and switches strengths (``set_adapters``); a job without any turns them off
(``disable_lora``: PEFT's layers then return exactly the base layer's output, so the frames equal the base model's).
The base model is never reloaded for a LoRA change."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

from i2v.findings import Finding
from i2v.loras.files import LoraFile, file_sha256
from i2v.loras.match import LoraFit, fit_lora

log = logging.getLogger(__name__)

MAX_RESIDENT = 6  # adapters kept loaded; beyond it, those the current job does not use are deleted


@dataclass(frozen=True)
class ResidentAdapter:
    name: str  # PEFT adapter name
    fit: LoraFit
    experts: int  # denoisers it was loaded into (2: Wan 2.2 A14B's high- and low-noise transformers)


class ResidentLoras:
    def __init__(self):
        self._adapters: dict[str, ResidentAdapter] = {}  # sha256 → adapter
        self._active = False

    def forget(self) -> None:
        """The pipeline was unloaded or rebuilt: its adapters went with it."""
        self._adapters.clear()
        self._active = False

    def use(self, pipe, files: tuple[LoraFile, ...], family: str) -> tuple[list[dict], list[Finding]]:
        """Make exactly ``files`` active on ``pipe`` at their strengths: (one record per LoRA, warnings)."""
        if not files:
            if self._active:
                pipe.disable_lora()
                self._active = False
            return [], []
        records, warnings, names, weights = [], [], [], []
        for lora in files:
            sha = file_sha256(lora.path)
            adapter = self._adapters.get(sha) or self._load(pipe, lora, sha, family)
            names.append(adapter.name)
            weights.append(lora.strength)
            warning = adapter.fit.warning(lora.name)
            warnings += [warning] if warning else []
            records.append({"file": lora.name, "sha256": sha, "strength": lora.strength, "source": lora.source,
                            "tensors_applied": adapter.fit.matched, "tensors_skipped": adapter.fit.unmatched,
                            "experts": adapter.experts})
        self._evict(pipe, keep=set(names))
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
        self._active = True
        log.info("LoRAs active: %s", ", ".join(f"{r['file']} ×{r['strength']:g}" for r in records))
        return records, warnings

    def _load(self, pipe, lora: LoraFile, sha: str, family: str) -> ResidentAdapter:
        from safetensors.torch import load_file

        fit = fit_lora(pipe, load_file(str(lora.path)), lora.name, family)
        name = f"lora_{sha[:16]}"
        experts = 1
        with warnings.catch_warnings():
            # Several adapters in one model is what this class is for; PEFT warns about it on every load.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            pipe.load_lora_weights(fit.state_dict, adapter_name=name)
            if getattr(pipe, "transformer_2", None) is not None:  # Wan 2.2 A14B: the low-noise expert too
                pipe.load_lora_weights(fit.state_dict, adapter_name=name, load_into_transformer_2=True)
                experts = 2
        adapter = ResidentAdapter(name, fit, experts)
        self._adapters[sha] = adapter
        log.info("loaded LoRA %s (%d tensors into %d denoiser(s))", lora.name, fit.matched, experts)
        return adapter

    def _evict(self, pipe, keep: set[str]) -> None:
        unused = [sha for sha, a in self._adapters.items() if a.name not in keep]
        while len(self._adapters) > MAX_RESIDENT and unused:
            sha = unused.pop(0)
            pipe.delete_adapters(self._adapters.pop(sha).name)
