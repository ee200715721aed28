"""The memory planner: predicts peak VRAM for a request and picks the best plan that fits the free memory.

Order of preference (first that fits wins): the request as asked with the fastest settings; then savings that
cost no quality (smaller VAE decode chunks — the VAE is 2D, so chunking changes memory, not pixels — tiled
decoding, one model on the GPU at a time); only then a lower tier (fewer frames, then lower resolution), each
again with the savings. A request that fits nowhere is refused before anything loads, with the figures.

Each model's memory profile (``estimate.MemoryProfile``) predicts its peak and says how its memory responds: the
diffusion transformers decode with a causal 3-D VAE that takes no frame chunks, so their ladder skips that step, and
their fewer-frames steps are every count the model's frame rule allows below the request (their memory grows a little
per frame, so the most frames that fit is the aim).

After a real out-of-memory error the run is retried once on a later plan that is predicted to need clearly less in
the phase that failed (``next_down``); when the VAE decode failed, the finished latents are decoded again with
less memory first (``smaller_decode``), without denoising again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.gpu.hardware import GpuDevice, GpuInfo
from i2v.memory.estimate import GIB, VramEstimate
from i2v.planning.plan import ExecutionPlan, PlanDecision, choose_device, choose_dtype
from i2v.spec import ModelSpec

log = logging.getLogger(__name__)

MARGIN_BYTES = int(0.5 * GIB)  # kept free besides the prediction: other processes grow, predictions err
MARGIN_FRACTION = 0.05
DECODE_CHUNKS = (8, 4, 2, 1)
RETRY_MIN_FREED_BYTES = GIB  # an out-of-memory retry must free this much in the phase that failed,
RETRY_MIN_FREED_FRACTION = 0.10  # or this fraction of that phase's prediction when that is less
HOST_MARGIN_FRACTION = 0.10  # of the CPU RAM available, kept free beside the weights group offload pins there


def _decodes_in_frame_chunks(spec: ModelSpec) -> bool:
    # A spec without a memory profile (none is registered today) gets the 2-D VAE ladder; nothing is predicted.
    return spec.memory is None or spec.memory.decodes_in_frame_chunks


def _frees_enough(failed: VramEstimate | None, retry: VramEstimate | None, phase: str) -> bool:
    """A retry after an out-of-memory error must be predicted to need clearly less in the phase that failed: at
    least RETRY_MIN_FREED_BYTES less, or RETRY_MIN_FREED_FRACTION of that phase's prediction on small runs. The
    error means the run took more than predicted there; a plan that changes only what the failed phase does not
    use (decode chunks when the denoiser failed) would fail the same way. Without a memory model any later plan
    counts."""
    if failed is None or retry is None:
        return True
    failed_total = failed.phase_bytes(phase)
    freed = failed_total - retry.phase_bytes(phase)
    return freed > 0 and freed >= min(RETRY_MIN_FREED_BYTES, RETRY_MIN_FREED_FRACTION * failed_total)


class InsufficientMemoryError(BadInputError):
    """Even the smallest plan does not fit: refused before loading anything."""


@dataclass(frozen=True)
class Candidate:
    width: int
    height: int
    frames: int
    plan: ExecutionPlan
    estimate: VramEstimate
    changes: tuple[str, ...]  # what differs from the request as asked, in words


class MemoryPlanner:
    def __init__(self, gpu_info: GpuInfo, *, busy: Callable[[str], bool] | None = None,
                 margin_bytes: int = MARGIN_BYTES, margin_fraction: float = MARGIN_FRACTION):
        self.gpu_info = gpu_info
        self.busy = busy or (lambda _device: False)
        self.margin_bytes = margin_bytes
        self.margin_fraction = margin_fraction

    # -- the Planner interface ----------------------------------------------------------------------------
    def plan(self, spec: ModelSpec, width: int, height: int, frames: int, *, device: str | None,
             dtype: str) -> PlanDecision:
        gpus = self._gpus_to_consider(device)
        if not gpus:
            chosen, notices = choose_dtype(spec, None, dtype)
            plan = next(self._savings(spec, frames, None, chosen))[0]
            slow = "" if spec.random_weights else " The real model takes minutes per step on a CPU; use a GPU."
            notices = list(notices) + [Finding("plan.cpu", f"Running on the CPU: no GPU memory to plan for.{slow}")]
            return PlanDecision(plan, frames, width, height, tuple(notices))
        best: tuple[int, int, GpuDevice, Candidate] | None = None
        for gpu in gpus:
            chosen, _ = choose_dtype(spec, gpu, dtype)
            for rank, candidate in enumerate(self.candidates(spec, width, height, frames, gpu, chosen)):
                if self.fits(candidate.estimate, gpu):
                    key = (rank, -gpu.free_bytes)
                    if best is None or key < best[:2]:
                        best = (rank, -gpu.free_bytes, gpu, candidate)
                    break
        if best is None:
            raise self._refusal(spec, width, height, frames, gpus, dtype)
        _, _, gpu, chosen_candidate = best
        _, dtype_notices = choose_dtype(spec, gpu, dtype)
        notices = list(dtype_notices)
        if chosen_candidate.changes:
            notices.append(self._downgrade_notice(spec, width, height, frames, gpu, chosen_candidate))
        log.info("plan on %s: %s", gpu.name, chosen_candidate.plan.to_dict())
        return PlanDecision(chosen_candidate.plan, chosen_candidate.frames, chosen_candidate.width,
                            chosen_candidate.height, tuple(notices), chosen_candidate.estimate)

    def next_down(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision, *,
                  phase: str | None = None) -> PlanDecision | None:
        """The plan to retry the whole run with after a real out-of-memory error in ``phase`` ("generate" or
        "decode"; None: the phase that sets the predicted peak). The prediction was wrong, so the retry is taken
        whether or not it is predicted to fit, but it must need clearly less in the phase that failed
        (``_frees_enough``): a plan that changes only what that phase does not use would fail the same way."""
        phase = phase or ("decode" if current.estimate is not None and current.estimate.stage == "decode"
                          else "generate")
        following = self._after(spec, width, height, frames, current, phase)
        if following is None:
            return None
        where = "while decoding the video" if phase == "decode" else "while generating"
        notice = Finding(
            "plan.oom_retry",
            f"The GPU ran out of memory {where}; retrying once with a smaller plan: {', '.join(following.changes)}.",
        )
        return PlanDecision(following.plan, following.frames, following.width, following.height, (notice,),
                            following.estimate)

    def smaller_decode(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision
                       ) -> PlanDecision | None:
        """After an out-of-memory error in the VAE decode: a plan with the same size and frames whose decode needs
        clearly less (smaller chunks, tiles, the other models off the GPU), so the latents already denoised are
        decoded again into the same video instead of denoising from the start. None when there is none."""
        following = self._after(spec, width, height, frames, current, "decode", same_shape=True)
        if following is None:
            return None
        decode_changes = [change for change in following.changes if "→" not in change]
        notice = Finding(
            "plan.oom_retry",
            "The GPU ran out of memory while decoding the video; the finished latents were decoded again with "
            f"less memory ({', '.join(decode_changes)}): the same video, without denoising again.",
        )
        return PlanDecision(following.plan, following.frames, following.width, following.height, (notice,),
                            following.estimate)

    def _after(self, spec: ModelSpec, width: int, height: int, frames: int, current: PlanDecision, phase: str,
               *, same_shape: bool = False) -> Candidate | None:
        gpu = next((g for g in self.gpu_info.devices() if g.torch_device == current.plan.device), None)
        ladder = list(self.candidates(spec, width, height, frames, gpu, current.plan.dtype))
        keys = [(c.width, c.height, c.frames, c.plan) for c in ladder]
        try:
            index = keys.index((current.width, current.height, current.frames, current.plan))
        except ValueError:
            return None
        shape = (current.width, current.height, current.frames)
        return next((candidate for candidate in ladder[index + 1:]
                     if (not same_shape or (candidate.width, candidate.height, candidate.frames) == shape)
                     and _frees_enough(ladder[index].estimate, candidate.estimate, phase)), None)

    # -- the ladder ---------------------------------------------------------------------------------------
    def candidates(self, spec: ModelSpec, width: int, height: int, frames: int, gpu: GpuDevice | None,
                   dtype: str) -> Iterator[Candidate]:
        for w, h, f, shape_changes in self._shapes(spec, width, height, frames):
            for plan, plan_changes in self._savings(spec, f, gpu, dtype):
                if not self._host_holds(spec, plan):
                    continue
                estimate = spec.memory.predict_peak(
                    width=w, height=h, frames=f, dtype=plan.dtype,
                    decode_chunk_size=plan.decode_chunk_size, vae_tiling=plan.vae_tiling,
                    cpu_offload=plan.cpu_offload, fp8_weights=plan.fp8_weights,
                ) if spec.memory else None
                yield Candidate(w, h, f, plan, estimate, shape_changes + plan_changes)

    def _shapes(self, spec: ModelSpec, width: int, height: int, frames: int):
        fewer = spec.memory.frame_rungs(frames) if spec.memory else ()
        frame_counts = [frames] + [spec.frame_rule.nearest(max(n, spec.min_frames), spec.min_frames, spec.max_frames)
                                   for n in fewer if n < frames]
        frame_counts = list(dict.fromkeys(n for n in frame_counts if n <= frames))
        area = getattr(spec, "tier_area", lambda tier: tier * tier)  # Wan names its tiers by area
        sizes = [(width, height)] + [
            spec.size_for_tier(tier, width / height)[0]
            for tier in sorted(spec.resolution_tiers, reverse=True) if area(tier) < width * height * 0.9
        ]
        for w, h in dict.fromkeys(sizes):
            for f in frame_counts:
                changes = []
                if (w, h) != (width, height):
                    changes.append(f"{width}×{height} → {w}×{h}")
                if f != frames:
                    changes.append(f"{frames} → {f} frames")
                yield w, h, f, tuple(changes)

    def _savings(self, spec: ModelSpec, frames: int, gpu: GpuDevice | None, dtype: str):
        """The memory savings for one shape, cheapest first. A causal 3-D VAE (``decodes_in_frame_chunks`` False)
        decodes the whole clip with a temporal cache, so chunk sizes change nothing and only tiling and offload are
        offered; a transformer whose blocks can stream (``streams_blocks``) gets the group-offload and fp8 rungs."""
        device = gpu.torch_device if gpu else "cpu"
        name = gpu.name if gpu else None
        # Decoding more than 8 frames per call saves no measurable time but costs ~0.38 GiB per 512² frame.
        first_chunk = min(frames, DECODE_CHUNKS[0])
        yield ExecutionPlan(device, dtype, first_chunk, gpu_name=name), ()
        if not _decodes_in_frame_chunks(spec):
            tiled = ExecutionPlan(device, dtype, first_chunk, vae_tiling=True, gpu_name=name)
            yield tiled, ("decoding in tiles",)
            if gpu is not None:
                yield (replace(tiled, cpu_offload="model"),
                       ("decoding in tiles", "keeping only the active model on the GPU"))
                if spec.memory is not None and spec.memory.streams_blocks:
                    yield from _streaming_rungs(spec, tiled)
            return
        for chunk in DECODE_CHUNKS:
            if chunk < first_chunk:
                yield ExecutionPlan(device, dtype, chunk, gpu_name=name), (f"decoding {chunk} frame(s) at a time",)
        yield (ExecutionPlan(device, dtype, 1, vae_tiling=True, gpu_name=name),
               ("decoding 1 frame at a time in tiles",))
        if gpu is not None:  # model offload needs an accelerator
            yield (ExecutionPlan(device, dtype, 1, vae_tiling=True, cpu_offload="model", gpu_name=name),
                   ("decoding 1 frame at a time in tiles", "keeping only the active model on the GPU"))

    # -- helpers -------------------------------------------------------------------------------------------
    def _host_holds(self, spec: ModelSpec, plan: ExecutionPlan) -> bool:
        """Group offload pins every weight in CPU RAM: a rung whose weights do not fit there is not offered."""
        # Unknown RAM (None) is not checked: the plan's notice says what it needs.
        available = self.gpu_info.host_memory() if plan.cpu_offload == "group" else None
        if available is None:
            return True
        return spec.memory.host_bytes(plan.dtype, plan.fp8_weights) <= available * (1 - HOST_MARGIN_FRACTION)

    def budget(self, gpu: GpuDevice) -> int:
        return self.budget_of(gpu.free_bytes)

    def budget_of(self, free_bytes: int) -> int:
        """How much of ``free_bytes`` a plan may use: the rest is the safety margin (docs/VRAM.md)."""
        return int(free_bytes * (1 - self.margin_fraction)) - self.margin_bytes

    def fits(self, estimate: VramEstimate | None, gpu: GpuDevice) -> bool:
        return estimate is None or estimate.peak_bytes <= self.budget(gpu)

    def _gpus_to_consider(self, device: str | None) -> list[GpuDevice]:
        if device == "cpu":
            return []
        if device is not None:
            return [choose_device(self.gpu_info, device)[1]]
        gpus = self.gpu_info.devices()
        idle = [g for g in gpus if not self.busy(g.torch_device)]
        return idle or gpus

    def _downgrade_notice(self, spec, width, height, frames, gpu, chosen: Candidate) -> Finding:
        asked = next(self.candidates(spec, width, height, frames, gpu, chosen.plan.dtype)).estimate
        still = "" if (chosen.width, chosen.height, chosen.frames) != (width, height, frames) else (
            f"; still {width}×{height} × {frames} frames")
        return Finding(
            "plan.downgraded" if still == "" else "plan.memory_saving",
            f"{width}×{height} × {frames} frames needs ~{asked.peak_gib:.1f} GiB, {gpu.free_bytes / GIB:.1f} GiB "
            f"free on {gpu.name}: {', '.join(chosen.changes)}{still} (predicted peak "
            f"{chosen.estimate.peak_gib:.1f} GiB).",
        )

    def _refusal(self, spec, width, height, frames, gpus, dtype) -> InsufficientMemoryError:
        gpu = max(gpus, key=lambda g: g.free_bytes)
        chosen, _ = choose_dtype(spec, gpu, dtype)
        smallest = list(self.candidates(spec, width, height, frames, gpu, chosen))[-1]
        estimate = smallest.estimate
        weights = ""
        stage, heaviest = max(estimate.weights_by_stage().items(), key=lambda item: item[1])
        if heaviest > self.budget(gpu):  # no size or frame count can help
            weights = (f" The weights alone take {heaviest / GIB:.1f} GiB in {chosen} ({stage} stage), even with "
                       "model offload: no smaller size or frame count fits.")
        return InsufficientMemoryError(
            f"{width}×{height} × {frames} frames does not fit: even {smallest.width}×{smallest.height} × "
            f"{smallest.frames} frames with every memory saving needs ~{estimate.peak_gib:.1f} GiB, and "
            f"{gpu.name} has {gpu.free_bytes / GIB:.1f} GiB free, of which {self.budget(gpu) / GIB:.1f} GiB may be "
            f"planned (the rest is a safety margin).{weights} Close other programs using the GPU or use one with "
            "more memory."
        )


def _streaming_rungs(spec: ModelSpec, tiled: ExecutionPlan):
    """Past model offload, for transformers: stream the blocks from CPU RAM (no quality cost, slower), then store the
    transformer's weights in fp8 (a slight quality cost), then both. Each says what it costs."""
    ram = spec.memory.host_bytes(tiled.dtype) / GIB
    ram_fp8 = spec.memory.host_bytes(tiled.dtype, fp8_weights=True) / GIB
    streaming = f"streaming the models' blocks from CPU RAM (slower: weights cross PCIe every step; ~{ram:.0f} GiB RAM)"
    fp8 = "storing the transformer's weights in fp8 (slight quality cost)"
    # fp8 storage is for half-precision compute, and casts float weights (not a quantized GGUF transformer's)
    if tiled.dtype == "float32" or not spec.memory.fp8_weights_possible:
        yield replace(tiled, cpu_offload="group"), ("decoding in tiles", streaming)
        return
    yield replace(tiled, cpu_offload="group"), ("decoding in tiles", streaming)
    yield replace(tiled, cpu_offload="model", fp8_weights=True), ("decoding in tiles", "keeping only the active model on the GPU", fp8)
    yield (replace(tiled, cpu_offload="group", fp8_weights=True),
           ("decoding in tiles", streaming.replace(f"~{ram:.0f} GiB", f"~{ram_fp8:.0f} GiB"), fp8))


def decode_description(spec: ModelSpec, plan: ExecutionPlan, *, short: bool = False) -> str:
    """How the plan decodes, in words: frames per VAE call for a 2-D VAE; a causal 3-D VAE takes the whole clip
    with a temporal cache, so only tiling applies."""
    if not _decodes_in_frame_chunks(spec):
        return ("tiled" if plan.vae_tiling else "untiled") if short else \
            f"decode the whole clip{' in tiles' if plan.vae_tiling else ''}"
    frames = f"{plan.decode_chunk_size} frame(s)"
    return f"{frames}{', tiled' if plan.vae_tiling else ''}" if short else \
        f"decode {frames} per call{', tiled' if plan.vae_tiling else ''}"


def decision_table(spec: ModelSpec, presets: dict, cards_gib: tuple[int, ...], aspect: float = 1.0) -> str:
    """Markdown: what the planner does for each preset on each card size (an image of ``aspect`` width/height,
    square unless given; bf16, idle card). ``presets`` as the model sees them (``presets_for_model``)."""
    from i2v.gpu.hardware import FixedGpuInfo

    def tier_spec(preset):  # two stages, or a distilled schedule's batch-1 calls, as the tier runs them
        return model_spec.for_tier(two_stage=preset.two_stage, unguided=preset.sigmas is not None)

    model_spec = spec
    rows = ["| card (free GiB) | preset | runs as | decode | offload | predicted peak GiB |",
            "|---|---|---|---|---|---|"]
    for card in cards_gib:
        for preset in presets.values():
            spec = tier_spec(preset)
            (width, height), _ = spec.size_for_tier(preset.resolution, aspect)
            planner = MemoryPlanner(FixedGpuInfo.single(total_gib=card))
            try:
                decision = planner.plan(spec, width, height, preset.frames, device=None, dtype="auto")
            except InsufficientMemoryError:
                rows.append(f"| {card} | {preset.name} | refused | – | – | – |")
                continue
            plan = decision.plan
            shape = f"{decision.width}×{decision.height} × {decision.frames}"
            if (decision.width, decision.height, decision.frames) != (width, height, preset.frames):
                shape += " (downgraded)"
            decode = decode_description(spec, plan, short=True)
            offload = plan.cpu_offload + (" + fp8 weights" if plan.fp8_weights else "")
            rows.append(f"| {card} | {preset.name} | {shape} | {decode} | {offload} | "
                        f"{decision.estimate.peak_gib:.1f} |")
    return "\n".join(rows)
