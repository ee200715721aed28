"""The model backend interface. A backend declares what its model accepts (``spec``), loads it, runs the
denoising loop to latents and decodes latents to frames. The engine owns everything around that: validation,
planning, NaN guards, retries, progress, files."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from i2v.findings import Finding
from i2v.planning.plan import ExecutionPlan
from i2v.spec import ModelSpec

# Called after every denoising step with (steps done, total steps, current latents).
StepCallback = Callable[[int, int, object], None]


@dataclass(frozen=True)
class LoadReport:
    model_id: str  # what the user asked for: hub id, folder or built-in name
    source: str  # "hub" | "folder" | "built-in"
    revision: str | None  # hub commit, or a build key for built-in models
    warnings: tuple[Finding, ...] = ()  # returned with every result made with this model
    load_seconds: float = 0.0
    components: dict[str, str] = field(default_factory=dict)  # component -> class name
    transformer_file: dict | None = None  # the GGUF the transformer came from: name, sha256, size, quant types

    def to_dict(self) -> dict:
        return {
            **({"transformer_file": dict(self.transformer_file)} if self.transformer_file else {}),
            "model_id": self.model_id,
            "source": self.source,
            "revision": self.revision,
            "warnings": [w.to_dict() for w in self.warnings],
            "load_seconds": round(self.load_seconds, 3),
            "components": dict(self.components),
        }


@dataclass(frozen=True)
class TwoStage:
    """A two-stage run (``ModelSpec.takes_upsampler``): the first stage denoises at half the sides, a ×2 latent
    upsampler doubles them, a short refinement with a fixed schedule runs at full size (with the LoRA it needs)."""

    upsampler: Path  # the upsampler's folder (config.json and its weights)
    upsampler_source: str  # as the tier names it, for the record
    refine_lora: object | None = None  # i2v.loras.files.LoraFile, active in the refinement only

    def to_dict(self) -> dict:
        return {"upsampler": self.upsampler_source,
                "refine_lora": self.refine_lora.source if self.refine_lora is not None else None}


@dataclass(frozen=True)
class DenoiseInputs:
    image: Image.Image  # already fitted to width × height
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    steps: int
    guidance: float
    fps: int
    seed: int
    last_image: Image.Image | None = None  # the video's last frame, fitted like ``image`` (spec.takes_last_image)
    audio: bool = True  # a model with sound makes its track (ignored by models without sound)
    flow_shift: float | None = None  # a step-distilled tier's sampler shift (None: the model's own rule)
    sigmas: str | None = None  # a tier's fixed sigma schedule (``ModelSpec.fixed_schedules``); None: the model's own
    two_stage: TwoStage | None = None  # the tier runs in two stages (None: one)


@dataclass(frozen=True)
class WithAudio:
    """What a model with sound returns beside its video. From ``denoise``: the video latents and the audio latents
    (None when the request turned audio off). From ``decode``: the video (1, 3, frames, height, width) in [-1, 1] and
    the waveform (1, channels, samples) in [-1, 1] at ``sample_rate`` (None when off). Models without sound return
    the video alone."""

    video: object
    audio: object | None
    sample_rate: int = 0


class ModelBackend(ABC):
    spec: ModelSpec
    model_id: str

    @abstractmethod
    def load(self, plan: ExecutionPlan) -> LoadReport:
        """Load (or keep) the model for ``plan``'s device, dtype and offload mode. Idempotent."""

    @property
    @abstractmethod
    def is_loaded(self) -> bool:
        """Whether the weights are in memory now."""

    @abstractmethod
    def set_dtype(self, dtype: str) -> None:
        """Cast the loaded model (used to retry in a safer precision)."""

    @abstractmethod
    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback) -> object:
        """Run the denoising loop; return the final latents (a tensor, or ``WithAudio`` for a model with sound)."""

    @abstractmethod
    def decode(self, latents: object, plan: ExecutionPlan, *, dtype: str | None = None) -> object:
        """Latents → video tensor (1, 3, frames, height, width) in [-1, 1] (``WithAudio`` with the waveform for a
        model with sound); ``dtype`` overrides the VAE's."""

    @abstractmethod
    def count_tokens(self, text: str) -> int | None:
        """Tokens the text encoder sees for ``text`` (with special tokens), or None if not loaded."""

    @abstractmethod
    def unload(self) -> None:
        """Free the model's memory."""

    def use_loras(self, loras: tuple) -> tuple[list[dict], list[Finding]]:
        """Make exactly ``loras`` (``i2v.loras.files.LoraFile``) active on the loaded model: (one record per LoRA,
        warnings). A backend without LoRA loading takes none (the request was refused before it got here)."""
        if loras:
            raise RuntimeError(f"{type(self).__name__} does not take LoRAs")
        return [], []

    # -- live previews (i2v.preview): a family that brings its step latents to one layout gets them ----------
    makes_previews = False

    def preview_latents(self, latents: object, inputs: DenoiseInputs) -> object:
        """A step's latents, as ``on_step`` receives them for ``inputs``, → (channels, frames, h, w) in the
        normalisation the denoiser works in (the preview map is fitted in that one). Only where ``makes_previews``."""
        raise NotImplementedError(f"{type(self).__name__} makes no live previews")

    def encode_preview_clip(self, video: object) -> object:
        """A still clip (1, 3, frames, H, W) in [-1, 1] → its VAE latents (channels, latent frames, h, w), in the
        layout and normalisation of ``preview_latents``: what the preview map is fitted on."""
        raise NotImplementedError(f"{type(self).__name__} makes no live previews")

    def configure_speedups(self, speedups) -> None:
        """Use ``speedups`` (``i2v.speedups.Speedups``) from now on; a backend without any ignores them."""

    def speedups_record(self) -> dict:
        """What the last run used, for its record: settings, what was applied, step-cache counts."""
        return {}

    def denoising_record(self) -> dict:
        """Which path the last denoise took, for its record (a family with more than one: LTX-2's one or two
        stages, each stage's size, steps and schedule); {} where there is only one."""
        return {}
