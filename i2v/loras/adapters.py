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
    components: tuple[str, ...]  # where it was loaded (Wan 2.2 A14B: transformer, transformer_2 or both)


class ResidentLoras:
    def __init__(self):
        self._adapters: dict[tuple[str, str], ResidentAdapter] = {}  # (sha256, expert) → adapter
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
            adapter = self._adapters.get((sha, lora.expert)) or self._load(pipe, lora, sha, family)
            names.append(adapter.name)
            weights.append(lora.strength)
            warning = adapter.fit.warning(lora.name)
            warnings += [warning] if warning else []
            records.append({"file": lora.name, "sha256": sha, "strength": lora.strength, "source": lora.source,
                            "expert": lora.expert, "tensors_applied": adapter.fit.matched,
                            "tensors_skipped": adapter.fit.unmatched, "loaded_into": list(adapter.components)})
        self._evict(pipe, keep=set(names))
        self._activate(pipe, names, weights)
        self._active = True
        log.info("LoRAs active: %s", ", ".join(f"{r['file']} ×{r['strength']:g}" for r in records))
        return records, warnings

    @staticmethod
    def _activate(pipe, names: list[str], weights: list[float]) -> None:
        """Each component gets the job's adapters it holds (an expert without any is switched off): the pipeline's
        own ``set_adapters`` would refuse an adapter that only one of Wan 2.2 A14B's experts holds."""
        for component, present in pipe.get_list_adapters().items():
            module = getattr(pipe, component)
            wanted = [(name, weight) for name, weight in zip(names, weights) if name in present]
            if wanted:
                module.enable_lora()
                module.set_adapters([name for name, _ in wanted], [weight for _, weight in wanted])
            else:
                module.disable_lora()

    def _load(self, pipe, lora: LoraFile, sha: str, family: str) -> ResidentAdapter:
        from safetensors.torch import load_file

        fit = fit_lora(pipe, load_file(str(lora.path)), lora.name, family)
        name = f"lora_{sha[:16]}_{lora.expert}"
        two_experts = getattr(pipe, "transformer_2", None) is not None
        with warnings.catch_warnings():
            # Several adapters in one model is what this class is for; PEFT warns about it on every load.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            if lora.expert in ("both", "high") or not two_experts:
                pipe.load_lora_weights(fit.state_dict, adapter_name=name)  # the (high-noise) transformer
            if two_experts and lora.expert in ("both", "low"):  # Wan 2.2 A14B: the low-noise expert
                pipe.load_lora_weights(fit.state_dict, adapter_name=name, load_into_transformer_2=True)
        components = tuple(c for c, present in pipe.get_list_adapters().items() if name in present)
        adapter = ResidentAdapter(name, fit, components)
        self._adapters[(sha, lora.expert)] = adapter
        log.info("loaded LoRA %s (%d tensors into %s)", lora.name, fit.matched, ", ".join(components))
        return adapter

    def _evict(self, pipe, keep: set[str]) -> None:
        unused = [key for key, a in self._adapters.items() if a.name not in keep]
        while len(self._adapters) > MAX_RESIDENT and unused:
            key = unused.pop(0)
            pipe.delete_adapters(self._adapters.pop(key).name)
