"""The optimisations measured on/off, for ``python -m i2v bench``: one preset, our engine against itself.

The reference is our engine with every speedup off (``Speedups()``: diffusers' own SDPA attention, no step cache,
no channels-last, no compile) and the planner's dtype. Each variant changes one thing; all are run on the same
model, seed and settings, and their frames are compared with the reference's (PSNR). The cheap variants (a
setting of the resident pipeline) are interleaved with the reference, repeat by repeat, so that a busy machine
slows them alike; the ones that rebuild something (another dtype, ``torch.compile``) run after, each with one
excluded first run whose time is reported (for compile it is the compilation).
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field

from i2v.bench.memory import nvml_peak_for
from i2v.bench.quality import psnr
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.planning.plan import PlanDecision
from i2v.speedups import Speedups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    speedups: Speedups
    dtype: str | None = None  # None: the planner's choice, as in the reference
    decode_chunk: int | None = None  # frames per VAE call instead of the planner's choice
    separate: bool = False  # rebuilds something: run after the interleaved ones, first run excluded and reported


@dataclass
class VariantRow:
    variant: str
    settings: dict
    dtype: str
    decode_chunk: int  # frames per VAE decode call
    core_s: float  # median denoise + decode
    step_s: float
    decode_s: float
    speedup: float  # reference core_s / this core_s (> 1: faster than no speedups)
    psnr_db: float | None  # vs the reference's frames; None when identical
    identical_frames: bool
    first_run_s: float | None  # separate variants: the excluded first run (compilation included)
    peak_torch_bytes: int | None
    peak_nvml_bytes: int | None
    applied: list[str] = field(default_factory=list)
    step_cache: dict | str | None = None


def variants_for(*, on_gpu: bool, planner_dtype: str, with_compile: bool) -> list[Variant]:
    """The reference first, then one variant per optimisation the issue names (those this device can run)."""
    variants = [
        Variant("reference: no speedups", Speedups()),
        Variant("step cache, deep features every 2nd step", Speedups(step_cache_interval=2)),
        Variant("step cache, deep features every 3rd step", Speedups(step_cache_interval=3)),
        Variant("channels-last convolutions", Speedups(channels_last=True)),
        Variant("classic attention (SDPA off)", Speedups(attention="classic")),
        Variant("step cache every 2nd step + channels-last", Speedups(step_cache_interval=2, channels_last=True)),
        Variant("decode 1 frame per VAE call (the pipeline's default)", Speedups(), decode_chunk=1),
    ]
    if on_gpu:
        # bf16 is the planner's pick where the card has it; fp16 is what the diffusers docs load.
        other = "float16" if planner_dtype == "bfloat16" else "bfloat16"
        variants.append(Variant(f"{other} instead of {planner_dtype}", Speedups(), dtype=other, separate=True))
    if with_compile:
        variants.append(Variant("torch.compile (regional, inductor)", Speedups(compile=True), separate=True))
    return variants


def run_speedup_variants(engine: Engine, request: GenerationRequest, variants: list[Variant], *,
                         repeats: int) -> list[VariantRow]:
    """``request`` is one preset's request (its model already warm). Returns one row per variant, reference first."""
    from i2v.speedups import revert_speedups

    runs: dict[str, list] = {v.name: [] for v in variants}
    frames: dict[str, object] = {}
    first: dict[str, float] = {}
    on_gpu = engine.prepare(request).plan.device.startswith("cuda")

    def one_run(variant: Variant):
        engine.speedups = variant.speedups
        changed = request if variant.dtype is None else request.with_changes(dtype=variant.dtype)
        planner = engine.planner
        if variant.decode_chunk is not None:
            engine.planner = _FixedDecodeChunk(planner, variant.decode_chunk)
        try:
            with nvml_peak_for(on_gpu) as peak:
                started = time.perf_counter()
                video = engine.generate(changed, keep_frames=True).videos[0]
                elapsed = time.perf_counter() - started
        finally:
            engine.planner = planner
        return video, elapsed, peak

    interleaved = [v for v in variants if not v.separate]
    for _ in range(repeats):
        for variant in interleaved:
            video, _, peak = one_run(variant)
            runs[variant.name].append((video, peak))
            frames[variant.name] = video.frames
    for variant in (v for v in variants if v.separate):
        _, first[variant.name], _ = one_run(variant)
        for _ in range(repeats):
            video, _, peak = one_run(variant)
            runs[variant.name].append((video, peak))
            frames[variant.name] = video.frames
    engine.speedups = Speedups()
    if engine.backend is not None and engine.backend.is_loaded:
        revert_speedups(engine.backend.pipeline)  # leave the resident pipeline as the reference found it
    return _rows(variants, runs, frames, first)


class _FixedDecodeChunk:
    """The engine's planner with the frames per VAE decode call forced (the other decisions are its own). After an
    out-of-memory error the planner's own retry plans apply, asked about the plan it made."""

    def __init__(self, planner, chunk: int) -> None:
        self._planner, self._chunk = planner, chunk
        self._last: tuple[PlanDecision, PlanDecision] | None = None  # (forced, the planner's own)

    def plan(self, spec, width, height, frames, *, device, dtype) -> PlanDecision:
        decision = self._planner.plan(spec, width, height, frames, device=device, dtype=dtype)
        forced = dataclasses.replace(decision, plan=dataclasses.replace(decision.plan, decode_chunk_size=self._chunk))
        self._last = (forced, decision)
        return forced

    def next_down(self, spec, width, height, frames, current, *, phase=None) -> PlanDecision | None:
        return self._planner.next_down(spec, width, height, frames, self._own(current), phase=phase)

    def smaller_decode(self, spec, width, height, frames, current) -> PlanDecision | None:
        return self._planner.smaller_decode(spec, width, height, frames, self._own(current))

    def _own(self, current: PlanDecision) -> PlanDecision:
        return self._last[1] if self._last is not None and current == self._last[0] else current


def _rows(variants, runs, frames, first) -> list[VariantRow]:
    reference = variants[0].name
    rows: list[VariantRow] = []
    for variant in variants:
        timings = [video.record["timings_s"] for video, _ in runs[variant.name]]
        core = statistics.median(t["denoise"] + t["decode"] for t in timings)
        last_video, _ = runs[variant.name][-1]
        quality = psnr(frames[variant.name], frames[reference])
        record = last_video.record
        peaks = [peak.bytes for _, peak in runs[variant.name] if peak.bytes is not None]
        rows.append(VariantRow(
            variant=variant.name, settings=variant.speedups.to_dict(), dtype=record["plan"]["dtype_used"],
            decode_chunk=record["plan"]["decode_chunk_size"],
            core_s=round(core, 3), step_s=round(statistics.median(t["denoise"] for t in timings)
                                                / record["params"]["steps"], 4),
            decode_s=round(statistics.median(t["decode"] for t in timings), 3),
            speedup=0.0, psnr_db=None if quality is None else round(quality, 2), identical_frames=quality is None,
            first_run_s=round(first[variant.name], 2) if variant.name in first else None,
            peak_torch_bytes=record["memory"].get("cuda_peak_allocated_bytes"),
            peak_nvml_bytes=max(peaks) if peaks else None,
            applied=list(record.get("speedups", {}).get("applied", [])),
            step_cache=record.get("speedups", {}).get("step_cache"),
        ))
        log.info("bench speedups %s: %s", variant.name, asdict(rows[-1]))
    for row in rows:
        row.speedup = round(rows[0].core_s / row.core_s, 3)
    return rows


def markdown_section(rows: list[VariantRow], preset: str, size: str, repeats: int) -> str:
    lines = [
        "## Optimisations on/off",
        "",
        f"Preset `{preset}` ({size}), our engine against itself: each row changes one setting from the reference "
        f"(every speedup off), same model and seed. Median of {repeats} runs; the cheap variants are interleaved "
        "run by run with the reference, the others (another dtype, compile) run after with one excluded first "
        "run, shown as \"first run\" (for compile: the compilation).",
        "",
        "| variant | dtype | denoise+decode s | s/step | decode s (frames/call) | vs reference | PSNR vs reference | first run s "
        "| peak torch GiB | peak NVML GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        quality = "identical" if r.identical_frames else f"{r.psnr_db:.1f} dB"
        lines.append(
            f"| {r.variant} | {r.dtype} | {r.core_s:.2f} | {r.step_s:.3f} | {r.decode_s:.2f} ({r.decode_chunk}) | "
            f"{r.speedup:.2f}× | "
            f"{quality} | {_or_dash(r.first_run_s, '{:.1f}')} | {_gib(r.peak_torch_bytes)} | "
            f"{_gib(r.peak_nvml_bytes)} |"
        )
    lines += [
        "",
        "\"vs reference\" is the reference's time over the variant's (> 1: faster). The quality target is PSNR ≥ 35 dB "
        "against the reference; on random weights PSNR measures numerical drift and the step cache's "
        "approximation error, not how a trained model's video looks.",
        "",
    ]
    return "\n".join(lines)


def _gib(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**30:.2f}"


def _or_dash(value, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


__all__ = ["Variant", "VariantRow", "markdown_section", "run_speedup_variants", "variants_for"]
