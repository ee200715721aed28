"""What a model accepts. Every backend declares a ``ModelSpec``; requests are checked and snapped against it
before anything is loaded, so a bad frame count or size fails (or is fixed, visibly) in milliseconds, not after
a minute of model loading."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.memory.estimate import MemoryProfile


@dataclass(frozen=True)
class FrameRule:
    """Valid frame counts are ``offset + k * step`` (k ≥ 0). Causal 3D VAEs want 4N+1; I2VGen-XL takes any count."""

    step: int = 1
    offset: int = 0

    def is_valid(self, frames: int) -> bool:
        return (frames - self.offset) % self.step == 0

    def nearest(self, frames: int, lowest: int, highest: int) -> int:
        """The valid count closest to ``frames`` within [lowest, highest]; ties go up (more frames, not fewer)."""
        below = frames - ((frames - self.offset) % self.step)
        above = below if below == frames else below + self.step
        candidates = [n for n in (above, below) if lowest <= n <= highest and self.is_valid(n)]
        if not candidates:
            raise BadInputError(f"No frame count in {lowest}..{highest} satisfies the model's rule {self.describe()}.")
        return min(candidates, key=lambda n: (abs(n - frames), -n))

    def describe(self) -> str:
        if self.step == 1:
            return "any count"
        return f"{self.step}N+{self.offset}" if self.offset else f"a multiple of {self.step}"


@dataclass(frozen=True)
class ModelSpec:
    """A model's constraints and defaults. Sizes are pixels, width × height."""

    family: str
    frame_rule: FrameRule
    min_frames: int
    max_frames: int
    size_multiple: int
    min_side: int
    max_side: int
    max_aspect: float  # long/short side the model is used at; wider inputs are cropped to it
    latent_channels: int
    vae_scale_factor: int
    preferred_dtypes: tuple[str, ...]  # best first; the engine takes the first the device supports
    resolution_tiers: tuple[int, ...]  # "512p" = about 512² pixels at the image's aspect ratio
    native_size: tuple[int, int]
    steps_range: tuple[int, int] = (1, 250)
    guidance_range: tuple[float, float] = (1.0, 30.0)
    fps_range: tuple[int, int] = (1, 30)
    default_frames: int = 16
    default_steps: int = 50
    default_guidance: float = 9.0
    default_fps: int = 8
    random_weights: bool = False  # outputs are noise: label them so wherever they are shown
    notes: tuple[str, ...] = field(default=())
    # For the VRAM prediction (memory/unet.py; memory/transformer.py for diffusion transformers); None: plan by device
    # only.
    memory: MemoryProfile | None = None
    # The model generates at native_size only (e.g. CogVideoX-5b-I2V: learned positional embeddings refuse any
    # other size). Tiers and explicit sizes then resolve to native_size, with a notice when they asked otherwise.
    fixed_size: bool = False
    # The [models.<key>] table in the preset files that holds this family's tier values (none: the top-level
    # values, which are I2VGen-XL's). Tiny test variants may have their own, so a CPU runs them in seconds.
    preset_key: str = "i2vgen-xl"
    # Tokens the text encoder reads, start/end tokens included (CLIP 77); longer prompts are truncated.
    max_prompt_tokens: int = 77
    # The model can also be given the video's last frame (``GenerationRequest.last_image``; Wan 2.2 I2V-A14B).
    takes_last_image: bool = False
    # The model generates a sound track with the picture (LTX-2): the mp4 carries it unless the request turns it off.
    has_audio: bool = False
    # LoRAs load into its denoiser (``GenerationRequest.loras``): its diffusers pipeline has a LoRA loader.
    takes_loras: bool = False
    # Fixed sigma schedules the backend can run instead of its own (name, steps): a tier names one
    # (``sigmas = "distilled"``), and the step count is the schedule's.
    fixed_schedules: tuple[tuple[str, int], ...] = ()

    # -- two stages ----------------------------------------------------------------------------------------
    @property
    def takes_upsampler(self) -> bool:
        """It can run in two stages around a ×2 latent upsampler (the memory profile knows the upsampler's size)."""
        return bool(getattr(self.memory, "upsampler_params", 0))

    def two_staged(self) -> "ModelSpec":
        """This model run in two stages: the first at half the sides, so the video's sides are multiples of twice
        the model's multiple (the first stage's are then multiples of it); the memory profile plans both stages."""
        multiple = 2 * self.size_multiple
        return replace(self, size_multiple=multiple, min_side=max(self.min_side, multiple),
                       memory=self.memory.two_staged())

    def for_tier(self, *, two_stage: bool, unguided: bool) -> "ModelSpec":
        """The spec a tier runs with: two stages where the tier names an upsampler (and the model has one); one
        transformer call of batch 1 per step where it runs a fixed distilled schedule with every guidance pass off."""
        spec = self.two_staged() if two_stage and self.takes_upsampler else self
        if unguided and hasattr(spec.memory, "cfg_batch"):
            spec = replace(spec, memory=replace(spec.memory, cfg_batch=1))
        return spec

    def schedule_steps(self, name: str) -> int:
        """The step count of the fixed schedule ``name``; refused when the model has no such schedule."""
        steps = dict(self.fixed_schedules).get(name)
        if steps is None:
            offered = ", ".join(n for n, _ in self.fixed_schedules) or "none"
            raise BadInputError(f"{self.family} has no {name!r} sigma schedule (it has: {offered}).")
        return steps

    # -- sizes -------------------------------------------------------------------------------------------
    def size_for_tier(self, tier: int, aspect: float) -> tuple[tuple[int, int], list[Finding]]:
        """Width × height of about ``tier``² pixels at ``aspect`` (width/height), each side a valid multiple."""
        if self.fixed_size:
            return self._fixed_size_for_tier(tier, aspect)
        if tier not in self.resolution_tiers:
            raise BadInputError(
                f"Resolution {tier}p is not offered for this model; choose one of "
                f"{', '.join(f'{t}p' for t in self.resolution_tiers)}."
            )
        notices: list[Finding] = []
        clamped = min(max(aspect, 1.0 / self.max_aspect), self.max_aspect)
        if not math.isclose(clamped, aspect, rel_tol=0.02):
            notices.append(
                Finding(
                    "size.aspect_cropped",
                    f"The image's aspect ratio {_ratio(aspect)} is beyond what the model is used at "
                    f"({_ratio(self.max_aspect)} at most), so the video is cropped to {_ratio(clamped)}.",
                    "Crop the image yourself to choose what stays in the frame.",
                )
            )
        width = math.sqrt(tier * tier * clamped)
        height = width / clamped
        return (self._round_side(width), self._round_side(height)), notices

    def snap_size(self, width: int, height: int) -> tuple[tuple[int, int], list[Finding]]:
        """Explicit sizes: reject out-of-range sides, snap others to the model's multiple with a notice."""
        for name, value in (("width", width), ("height", height)):
            if not self.min_side <= value <= self.max_side:
                raise BadInputError(
                    f"{name} {value} is out of range for this model: use {self.min_side}..{self.max_side} pixels."
                )
        if self.fixed_size:
            return self.native_size, self._fixed_size_notices(f"{width}×{height}", (width, height))
        snapped = (self._round_side(width), self._round_side(height))
        notices = []
        if snapped != (width, height):
            notices.append(
                Finding(
                    "size.snapped",
                    f"Size {width}×{height} changed to {snapped[0]}×{snapped[1]}: this model needs both sides to be "
                    f"multiples of {self.size_multiple}.",
                )
            )
        return snapped, notices

    def _fixed_size_for_tier(self, tier: int, aspect: float) -> tuple[tuple[int, int], list[Finding]]:
        # Presets name tiers for every model; a fixed-size model accepts any of them rather than refusing the
        # default preset, and says that the tier did not apply.
        asked = None if tier in self.resolution_tiers else f"{tier}p"
        notices = self._fixed_size_notices(asked, None)
        native_aspect = self.native_size[0] / self.native_size[1]
        if not math.isclose(aspect, native_aspect, rel_tol=0.02):
            notices.append(
                Finding(
                    "size.aspect_cropped",
                    f"The image's aspect ratio {_ratio(aspect)} differs from the model's fixed "
                    f"{_ratio(native_aspect)}, so the picture is centre-cropped to {_ratio(native_aspect)}.",
                    "Crop the image yourself to choose what stays in the frame.",
                )
            )
        return self.native_size, notices

    def _fixed_size_notices(self, asked: str | None, size: tuple[int, int] | None) -> list[Finding]:
        if asked is None or size == self.native_size:
            return []
        width, height = self.native_size
        return [
            Finding(
                "size.fixed",
                f"{asked} changed to {width}×{height}: {self.family} generates at {width}×{height} only.",
            )
        ]

    def _round_side(self, side: float) -> int:
        rounded = int(round(side / self.size_multiple)) * self.size_multiple
        lowest = math.ceil(self.min_side / self.size_multiple) * self.size_multiple
        highest = (self.max_side // self.size_multiple) * self.size_multiple
        return min(max(rounded, lowest), highest)

    # -- frames ------------------------------------------------------------------------------------------
    def snap_frames(self, frames: int) -> tuple[int, list[Finding]]:
        if not self.min_frames <= frames <= self.max_frames:
            raise BadInputError(
                f"{frames} frames is out of range for this model: use {self.min_frames}..{self.max_frames}."
            )
        snapped = self.frame_rule.nearest(frames, self.min_frames, self.max_frames)
        if snapped == frames:
            return frames, []
        return snapped, [
            Finding(
                "frames.snapped",
                f"{frames} frames changed to {snapped}: this model needs a frame count of the form "
                f"{self.frame_rule.describe()}.",
            )
        ]

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "frame_rule": self.frame_rule.describe(),
            "frames": [self.min_frames, self.max_frames],
            "size_multiple": self.size_multiple,
            "sides": [self.min_side, self.max_side],
            "latent_channels": self.latent_channels,
            "preferred_dtypes": list(self.preferred_dtypes),
            "resolution_tiers": list(self.resolution_tiers),
            "native_size": list(self.native_size),
            "fixed_size": self.fixed_size,
            "preset_key": self.preset_key,
            "random_weights": self.random_weights,
            "takes_last_image": self.takes_last_image,
            "has_audio": self.has_audio,
            "takes_loras": self.takes_loras,
        }


def _ratio(aspect: float) -> str:
    return f"{aspect:.2f}:1" if aspect >= 1 else f"1:{1 / aspect:.2f}"
