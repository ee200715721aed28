"""Everything decided before the model is loaded: preset merge, checks against the model's spec, the image,
guidance findings and the execution plan. Cheap (milliseconds to a second), so the UI can call it on every
change to show what a run would do."""
from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from i2v.backends import check_takes_transformer_file, gguf_file, last_frame_models, lora_models, spec_for
from i2v.backends.base import TwoStage
from i2v.backends.model_parts import required_part
from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.guidance.image_quality import ImageScores, assess_image
from i2v.guidance.framing import frame_picture, framing_notice
from i2v.guidance.images import LoadedImage, enhance, load_image
from i2v.planning.plan import ExecutionPlan, PlanDecision, Planner
from i2v.engine.presets import DEFAULT_PRESET, Preset, get_preset
from i2v.guidance.prompt_lint import KeywordLibrary, lint_prompt
from i2v.engine.request import MAX_SEED, GenerationRequest, seeds_for, validate_request
from i2v.spec import ModelSpec
from i2v.guidance.traps import parameter_traps
from i2v.loras.files import LoraFile, find_lora, lora_parameter_count, required_loras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedParams:
    """The parameters a run uses, after preset, snapping and plan. Recorded in every sidecar."""

    model: str
    family: str | None  # as given (None: known from the model's folder, cache or name)
    preset: str | None
    prompt: str
    negative_prompt: str
    resolution: int | None
    width: int
    height: int
    frames: int
    steps: int
    guidance: float
    fps: int
    seeds: tuple[int, ...]
    auto_enhance: bool
    last_image_sha256: str | None = None  # the last frame's picture, when one was given
    audio: bool = True  # a model with sound makes its track; no effect on models without sound
    transformer_file: str | None = None  # the GGUF the transformer is loaded from, as given
    loras: tuple[dict, ...] = ()  # each LoRA as given: source, strength (the record adds file name and sha256)
    flow_shift: float | None = None  # the tier's sampler shift (a step-distilled tier); None: the model's own
    sigmas: str | None = None  # the tier's fixed sigma schedule ("distilled"); None: the model's own
    two_stage: dict | None = None  # a two-stage tier's upsampler and refinement LoRA, as the tier names them
    framing: str = "crop"  # how the picture meets the video's aspect (guidance/framing.py)
    crop_focus: tuple[float, float] = (0.5, 0.5)  # the part kept by a crop: x, y from 0 to 1

    def for_seed(self, seed: int, dtype: str) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "seeds"}
        return {**data, "loras": [dict(lora) for lora in self.loras], "crop_focus": list(self.crop_focus), "seed": seed,
                "dtype": dtype}


@dataclass
class PreparedJob:
    request: GenerationRequest
    spec: ModelSpec
    params: ResolvedParams
    plan: ExecutionPlan
    image: Image.Image  # fitted (and enhanced when asked): exactly what the model sees
    source: LoadedImage
    image_scores: ImageScores
    image_sha256: str
    notices: list[Finding] = field(default_factory=list)  # what the engine changed
    warnings: list[Finding] = field(default_factory=list)  # risks in what was asked
    decision: PlanDecision | None = None  # the planner's full answer (with its VRAM estimate)
    last_source: LoadedImage | None = None  # the last frame as given (models with spec.takes_last_image)
    last_image: Image.Image | None = None  # … fitted like ``image``
    lora_files: tuple[LoraFile, ...] = ()  # the request's LoRAs, found (models with spec.takes_loras)
    two_stage: TwoStage | None = None  # a two-stage tier's upsampler and refinement LoRA, found on this machine

    def with_decision(self, decision: PlanDecision) -> "PreparedJob":
        """The same job on another plan (after an out-of-memory retry): size and frames may be smaller."""
        image = self.image
        if (decision.width, decision.height) != image.size:
            image = model_input(self.source.image, decision.width, decision.height, self.params)
        last_image = self.last_image
        if last_image is not None and (decision.width, decision.height) != last_image.size:
            last_image = model_input(self.last_source.image, decision.width, decision.height, self.params)
        params = replace(self.params, width=decision.width, height=decision.height, frames=decision.frames)
        return replace(self, params=params, plan=decision.plan, decision=decision, image=image,
                       last_image=last_image, notices=self.notices + list(decision.notices))

    def summary(self) -> dict:
        return {
            "params": {k: v for k, v in self.params.__dict__.items()},
            "plan": self.plan.to_dict(),
            "vram_estimate": self.decision.estimate.to_dict() if self.decision and self.decision.estimate else None,
            "notices": [n.to_dict() for n in self.notices],
            "warnings": [w.to_dict() for w in self.warnings],
            "image": self.image_info(),
        }

    def image_info(self) -> dict:
        return {
            "format": self.source.source_format,
            "mode": self.source.source_mode,
            "size": list(self.source.source_size),
            "sha256": self.image_sha256,
            "scores": self.image_scores.to_dict(),
        }


def prepare(
    request: GenerationRequest,
    planner: Planner,
    *,
    presets: dict[str, Preset] | None = None,
    keywords: KeywordLibrary | None = None,
    token_counter: Callable[[str], int] | None = None,
    load: Callable[[object], LoadedImage] = load_image,
) -> PreparedJob:
    """``load`` decodes the picture (the engine passes its cache of recently decoded files)."""
    validate_request(request)
    spec, file_notice = with_transformer_file(spec_for(request.model, request.family), request.model, request.family,
                                              request.transformer_file)
    check_last_image(request, spec)
    lora_files = find_loras(request, spec)
    preset_name = request.preset or DEFAULT_PRESET
    preset = get_preset(preset_name, presets, preset_key=spec.preset_key)
    lora_files = with_tier_lora(lora_files, preset, spec)
    spec, two_stage = with_two_stages(spec, preset, request.model)
    spec = spec.for_tier(two_stage=False, unguided=preset.sigmas is not None)  # a distilled schedule: batch 1
    refine_lora = (two_stage.refine_lora,) if two_stage and two_stage.refine_lora else ()
    spec = with_lora_weights(spec, lora_files + refine_lora)  # PEFT keeps an inactive adapter's weights loaded
    notices: list[Finding] = []
    warnings: list[Finding] = []

    steps = request.steps if request.steps is not None else preset.steps
    guidance = float(request.guidance if request.guidance is not None else preset.guidance)
    fps = request.fps if request.fps is not None else preset.fps
    _check_range("steps", steps, spec.steps_range, spec)
    _check_range("guidance", guidance, spec.guidance_range, spec)
    _check_range("fps", fps, spec.fps_range, spec)
    check_schedule(preset, spec, steps, guidance)
    source = load(request.image)
    notices += source.notices
    last_source = load_image(request.last_image) if request.last_image is not None else None
    width, height, frames, resolution, shape_notices = shape_for(
        spec, preset, frames=request.frames, resolution=request.resolution, width=request.width,
        height=request.height, aspect=source.image.width / source.image.height,
    )
    # The model's aspect rule is said with what framing did to this picture (framing_notice, below).
    notices += [n for n in shape_notices if n.code != "size.aspect_cropped"]

    if request.auto_enhance:
        notices.append(Finding("image.enhanced", "Auto-enhance raised contrast ×1.2 and sharpness ×1.1."))
    scores, image_warnings = assess_image(source.image, (width, height))
    warnings += image_warnings

    # Without a loaded tokenizer the linter estimates the token count (and says so).
    warnings += lint_prompt(request.prompt, request.negative_prompt, keywords, token_counter=token_counter,
                            max_tokens=spec.max_prompt_tokens)

    decision = planner.plan(spec, width, height, frames, device=request.device, dtype=request.dtype)
    notices += decision.notices + file_notice
    width, height, frames = decision.width, decision.height, decision.frames
    warnings += parameter_traps(
        width=width, height=height, frames=frames, steps=steps, guidance=guidance,
        negative_prompt=request.negative_prompt,
    )
    framed = framing_notice(source.image.size, (width, height), request.framing, request.crop_focus,
                            why_framed(spec, source.image.size, explicit=request.width is not None))
    notices += [framed] if framed else []

    params = ResolvedParams(
        model=request.model,
        family=request.family,
        preset=request.preset,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        resolution=resolution,
        width=width,
        height=height,
        frames=frames,
        steps=steps,
        guidance=guidance,
        fps=fps,
        seeds=seeds_for(request, secrets.randbelow(MAX_SEED + 1)),
        auto_enhance=request.auto_enhance,
        last_image_sha256=_image_digest(request.last_image, last_source) if last_source else None,
        audio=request.audio,
        transformer_file=request.transformer_file,
        loras=tuple(lora.choice().to_dict() for lora in lora_files),
        flow_shift=preset.flow_shift,
        sigmas=preset.sigmas,
        two_stage=two_stage.to_dict() if two_stage else None,
        framing=request.framing,
        crop_focus=tuple(request.crop_focus),
    )
    image = model_input(source.image, width, height, params)
    last_image = model_input(last_source.image, width, height, params) if last_source else None
    return PreparedJob(
        request=request, spec=spec, params=params, plan=decision.plan, image=image, source=source,
        image_scores=scores, image_sha256=_image_digest(request.image, source), notices=notices, warnings=warnings,
        decision=decision, last_source=last_source, last_image=last_image, lora_files=lora_files,
        two_stage=two_stage,
    )


def check_last_image(request: GenerationRequest, spec: ModelSpec) -> None:
    """A last frame only where the model takes one: elsewhere it would be ignored without a word."""
    if request.last_image is not None and not spec.takes_last_image:
        raise BadInputError(
            f"{spec.family} does not take a last frame; leave the last image out, or use a model that takes one: "
            f"{', '.join(last_frame_models())}."
        )


def find_loras(request: GenerationRequest, spec: ModelSpec) -> tuple[LoraFile, ...]:
    """The request's LoRA files, each found now (a hub file not yet downloaded is fetched when the job runs); only
    for a model that takes LoRAs: elsewhere they would be ignored without a word."""
    if request.loras and not spec.takes_loras:
        raise BadInputError(f"{spec.family} does not take LoRAs; leave them out, or use a model that takes them: "
                            f"{', '.join(lora_models())}.")
    one_expert = next((c for c in request.loras if c.expert != "both"), None)
    if one_expert is not None and expert_count(spec) < 2:
        raise BadInputError(f"LoRA {one_expert.source!r} is for the {one_expert.expert}-noise expert, but "
                            f"{spec.family} has one transformer: leave '@{one_expert.expert}' out.")
    return tuple(find_lora(choice, download=False) for choice in request.loras)


def with_lora_weights(spec: ModelSpec, lora_files: tuple[LoraFile, ...]) -> ModelSpec:
    """The spec the planner sees: the LoRAs' parameters (from their safetensors headers) loaded beside the
    transformer's. A hub LoRA not downloaded yet is not counted (its size is known only once it is here)."""
    count = sum(lora_parameter_count(lora.path) for lora in lora_files if lora.path is not None)
    add = getattr(spec.memory, "with_lora_params", None)
    return replace(spec, memory=add(count)) if count and add else spec


def expert_count(spec: ModelSpec) -> int:
    """Denoisers that take turns (Wan 2.2 I2V-A14B: 2), as the memory profile knows them."""
    return getattr(spec.memory, "experts", 1) if spec.memory is not None else 1


def with_tier_lora(lora_files: tuple[LoraFile, ...], preset: Preset, spec: ModelSpec) -> tuple[LoraFile, ...]:
    """The request's LoRAs plus the step-distilled one(s) the tier needs (once: a request may name them too)."""
    wanted = [(source, expert) for source, expert in ((preset.lora, "both"), (preset.lora_high, "high"),
                                                      (preset.lora_low, "low")) if source]
    given = {(lora.source, lora.expert) for lora in lora_files}
    missing = [pair for pair in wanted if pair not in given]
    needed = required_loras(missing, preset.lora_strength, f"The {preset.name} tier of {spec.family}") if missing else ()
    return (*needed, *lora_files)


def with_two_stages(spec: ModelSpec, preset: Preset, model: str) -> tuple[ModelSpec, TwoStage | None]:
    """A two-stage tier: the spec of a two-stage run (sides a multiple of twice the model's, both stages planned)
    and its upsampler and refinement LoRA, each found on this machine. Whatever is missing is refused in one message
    with the command that fetches each: never a one-stage run in its place."""
    if not preset.two_stage:
        return spec, None
    if not spec.takes_upsampler:
        raise BadInputError(f"The {preset.name} tier runs in two stages around a latent upsampler, which "
                            f"{spec.family} has not: choose another tier.")
    needed_by = f"The {preset.name} tier of {spec.family}"
    problems, upsampler, refine = [], None, ()
    try:
        upsampler = required_part(preset.upsampler, model, "the latent upsampler", needed_by)
    except BadInputError as exc:
        problems.append(str(exc))
    if preset.refine_lora:
        try:
            refine = required_loras([(preset.refine_lora, "both")], 1.0, f"{needed_by}, in its refinement stage,")
        except BadInputError as exc:
            problems.append(str(exc))
    if problems:
        raise BadInputError(" ".join(problems))
    return spec.for_tier(two_stage=True, unguided=False), TwoStage(upsampler, preset.upsampler,
                                                                    refine[0] if refine else None)


def check_schedule(preset: Preset, spec: ModelSpec, steps: int, guidance: float) -> None:
    """A tier on a fixed sigma schedule runs its steps, without guidance, as it was distilled: another step count
    or guidance would be silently ignored, so it is refused."""
    if preset.sigmas is None:
        return
    scheduled = spec.schedule_steps(preset.sigmas)
    if steps != scheduled:
        raise BadInputError(f"The {preset.name} tier runs {spec.family}'s fixed {preset.sigmas} schedule of {scheduled} "
                            f"steps, not {steps}: leave steps out (or choose another tier).")
    if guidance != 1.0:
        raise BadInputError(f"The {preset.name} tier runs {spec.family}'s {preset.sigmas} schedule without guidance "
                            f"(guidance 1), not {guidance:g}: leave guidance out (or choose another tier).")


def with_transformer_file(spec: ModelSpec, model: str, family: str | None, transformer_file: str | None
                          ) -> tuple[ModelSpec, tuple[Finding, ...]]:
    """The spec the planner sees: with a GGUF transformer, the file's size on disk is the transformer's weight bytes
    (the planner is unchanged: it plans a profile whose transformer weighs that much). No file: the spec as is."""
    if transformer_file is None:
        return spec, ()
    gguf_file.check_transformer_file(transformer_file)
    check_takes_transformer_file(model, family)
    size = gguf_file.file_size(transformer_file)
    path = gguf_file.local_path(transformer_file, download=False)
    tensors = gguf_file.read_tensors(path) if path is not None else None
    memory = spec.memory.with_transformer_bytes(size) if spec.memory is not None else None
    notice = Finding("plan.transformer_file", f"transformer from {gguf_file.describe(transformer_file, tensors, size)}.")
    return replace(spec, memory=memory), (notice,)


def shape_for(spec: ModelSpec, preset: Preset, *, frames: int | None, resolution: int | None,
              width: int | None, height: int | None, aspect: float):
    """Width, height, frames and tier after preset defaults and the model's snapping, with the notices.
    An explicit width × height wins over a resolution tier (tier: about tier² pixels at ``aspect``)."""
    frames, notices = spec.snap_frames(frames if frames is not None else preset.frames)
    if width is not None:
        (width, height), size_notices = spec.snap_size(width, height)
        resolution = None
    else:
        resolution = resolution if resolution is not None else preset.resolution
        (width, height), size_notices = spec.size_for_tier(resolution, aspect)
    return width, height, frames, resolution, notices + size_notices


def model_input(picture: Image.Image, width: int, height: int, params: ResolvedParams) -> Image.Image:
    """The picture the model sees: fitted to width × height (LANCZOS; cropped or padded as the request says),
    enhanced when asked."""
    fitted = frame_picture(picture, width, height, params.framing, params.crop_focus)
    return enhance(fitted) if params.auto_enhance else fitted


def why_framed(spec: ModelSpec, source_size: tuple[int, int], *, explicit: bool) -> str:
    """Why the video's aspect is not the picture's, in the words of the model's rule."""
    aspect = source_size[0] / source_size[1]
    if spec.fixed_size:
        return f"{spec.family} makes {spec.native_size[0]}×{spec.native_size[1]} only"
    if explicit:
        return "the size asked for"
    if max(aspect, 1 / aspect) > spec.max_aspect * 1.02:
        return f"this model is used at {spec.max_aspect:.2f}:1 at most"
    return f"this model's sides are multiples of {spec.size_multiple} px"


def _check_range(name: str, value: float, bounds: tuple[float, float], spec: ModelSpec) -> None:
    lowest, highest = bounds
    if not lowest <= value <= highest:
        raise BadInputError(f"{name} {value:g} is out of range for {spec.family}: use {lowest:g}..{highest:g}.")


def _image_digest(source, loaded: LoadedImage) -> str:
    """Identifies the input picture in the record, so a reproduction can check it has the same one."""
    digest = hashlib.sha256()
    if isinstance(source, bytes):
        digest.update(source)
    elif isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(loaded.image.tobytes())
    return digest.hexdigest()
