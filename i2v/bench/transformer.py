"""``python -m i2v bench --model <a transformer family>``: the transformer families' speedups, our engine against
itself on one preset (there is no plain-pipeline baseline for them yet: the preset table is I2VGen-XL's).

Rows, all with the same model, seed, size and frames: the reference (every speedup off, no LoRA); a random-weight
LoRA of rank 32 on every attention linear layer, loaded and unfused (its cost per step: the "LoRA overhead ≤ 3 %"
target); the step cache every 2nd and every 3rd step; the turbo tier against the preset (where the model is offered
turbo: 4 steps with its step-distilled LoRA and no guidance pass, the whole video's time); with ``--compile``
regional torch.compile. Each row gets one excluded first run (adapter loading, hooks, compilation), reported; the
cheap rows are then interleaved repeat by repeat with the reference and medians reported, as in ``speedups.py``.
A row a model cannot run (EasyAnimate takes no LoRA and has no cache hooks) says why instead of a figure.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from i2v.bench.latency import splice_section
from i2v.bench.quality import psnr
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.errors import BadInputError
from i2v.speedups import Speedups

log = logging.getLogger(__name__)

SECTION_PREFIX = "## Transformer families: "
TURBO = "turbo"
LORA_RANK = 32
LORA_OVERHEAD_TARGET_PCT = 3.0


@dataclass
class TransformerRow:
    row: str
    kind: str  # reference | lora | step_cache | turbo | compile
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    guidance: float | None = None
    core_s: float | None = None  # median denoise + decode
    step_s: float | None = None  # median denoise / steps
    speedup: float | None = None  # reference core_s / this core_s (> 1: the whole video is faster)
    step_ratio: float | None = None  # this step_s / the reference's (the LoRA's per-step cost)
    psnr_db: float | None = None  # vs the reference's frames; None when identical or not comparable
    identical_frames: bool = False
    no_psnr: str | None = None  # why the frames are not compared (they differ by design)
    first_run_s: float | None = None  # the excluded first run, whole generate call
    not_run: str | None = None  # why the row has no figures on this model or machine
    step_cache: dict | None = None  # the record's speedups.step_cache (computed / predicted calls)
    loras: list = field(default_factory=list)  # the record's LoRAs (file, tensors applied, experts)


@dataclass(frozen=True)
class _Case:
    name: str
    kind: str
    speedups: Speedups = Speedups()
    changes: dict = field(default_factory=dict)  # GenerationRequest fields that differ from the reference's
    separate: bool = False  # rebuilds the model's blocks (compile): run after the interleaved ones
    no_psnr: str | None = None
    not_run: str | None = None


def run_transformer_bench(*, model: str, preset: str, output_dir: Path, resolution: int | None = None,
                          steps: int | None = None, repeats: int = 3, with_compile: bool = False,
                          image, prompt: str, seed: int) -> tuple[list[TransformerRow], dict]:
    """The rows on ``preset`` for ``image`` (a PIL picture) and ``prompt``, reference first, and the run's facts."""
    from i2v.engine.record import library_versions

    output_dir.mkdir(parents=True, exist_ok=True)
    image_path = output_dir / "bench_input.png"
    image.save(image_path)
    engine = Engine(output_dir=output_dir)
    request = GenerationRequest(image=image_path, prompt=prompt, model=model, preset=preset, seeds=(seed,),
                                resolution=resolution, steps=steps)
    job = engine.prepare(request)
    engine.generate(request.with_changes(steps=2))  # warm-up: load, first-call allocations (excluded)
    loras = output_dir / "bench-loras"
    with _turbo_lora_folder(engine, job, loras) as turbo_case:
        cases = [_Case("reference: no speedups, no LoRA", "reference"), _lora_case(engine, job, loras),
                 *_step_cache_cases(engine), turbo_case]
        if with_compile:
            cases.append(_Case("torch.compile (regional, inductor)", "compile", Speedups(compile=True),
                               separate=True))
        runs, firsts = _run_cases(engine, request, cases, repeats)
    rows = _rows(cases, runs, firsts)
    meta = {
        "model": model, "family": job.spec.family, "device": job.plan.gpu_name or "CPU", "cpu_count": os.cpu_count(),
        "dtype": job.plan.dtype, "preset": preset, "seed": seed, "repeats": repeats, "steps_override": steps,
        "size": f"{job.params.width}×{job.params.height} × {job.params.frames} × {job.params.steps}",
        "guidance": job.params.guidance,
        "warm_up": "one 2-step run before the rows (excluded); each row's first run excluded too (shown)",
        "versions": library_versions(),
    }
    return rows, meta


def _lora_case(engine: Engine, job, folder: Path) -> _Case:
    name = f"LoRA rank {LORA_RANK}, strength 1 (loaded, unfused)"
    if not job.spec.takes_loras:
        return _Case(name, "lora", not_run=f"{job.spec.family} takes no LoRA (its diffusers pipeline has no LoRA "
                                           "loader)")
    from i2v.loras.choice import LoraChoice
    from i2v.loras.synthetic import write_random_lora

    path, layers = write_random_lora(engine.backend.pipeline.transformer, folder / "bench-rank32.safetensors",
                                     rank=LORA_RANK)
    return _Case(name, "lora", changes={"loras": (LoraChoice(str(path), 1.0),)},
                 no_psnr=f"frames differ by design (random LoRA on {layers} attention layers)")


def _step_cache_cases(engine: Engine) -> list[_Case]:
    from i2v.speedups.transformer_cache import supports_transformer_cache

    pipe = engine.backend.pipeline
    denoisers = [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None))
                 if m is not None]
    unsupported = None if denoisers and all(supports_transformer_cache(m) for m in denoisers) else \
        f"{type(denoisers[0]).__name__} has no cache hooks in diffusers"
    return [_Case(f"step cache every {label} step", "step_cache", Speedups(step_cache_interval=interval),
                  not_run=unsupported) for interval, label in ((2, "2nd"), (3, "3rd"))]


@contextlib.contextmanager
def _turbo_lora_folder(engine: Engine, job, folder: Path) -> Iterator[_Case]:
    """The turbo row's case. For a random-weight built-in model the bench writes the synthetic LoRA under the file
    name the tier asks for into its own LoRA folder (``I2V_LORA_DIR`` for the ``with`` block, restored after); for
    a real model the tier's LoRA must already be on this machine."""
    from i2v.backends.builtin import BuiltInModel
    from i2v.engine.presets import default_presets, presets_for_model
    from i2v.loras.files import required_loras
    from i2v.loras.synthetic import write_random_lora

    name = "turbo tier vs the preset (4 steps, distilled LoRA, no guidance pass)"
    tier = presets_for_model(default_presets(), job.spec.preset_key).get(TURBO)
    if tier is None:
        yield _Case(name, TURBO, not_run=f"the turbo tier is not offered for {job.spec.family}: there is no "
                                         "step-distilled LoRA for it")
        return
    params = job.params
    changes = {"preset": TURBO, "steps": None, "guidance": None, "resolution": None, "frames": params.frames,
               "width": params.width, "height": params.height}  # same video; the tier's steps, guidance, shift
    case = _Case(name.replace("4 steps", f"{tier.steps} steps"), TURBO, changes=changes,
                 no_psnr=f"frames differ by design ({tier.steps} steps, guidance {tier.guidance:g}, the LoRA)")
    previous = os.environ.get("I2V_LORA_DIR")
    try:
        wanted = [(source, expert) for source, expert in ((tier.lora, "both"), (tier.lora_high, "high"),
                                                          (tier.lora_low, "low")) if source]
        if isinstance(engine.backend, BuiltInModel):
            os.environ["I2V_LORA_DIR"] = str(folder / "turbo")
            pipe = engine.backend.pipeline
            for source, expert in wanted:
                denoiser = pipe.transformer_2 if expert == "low" else pipe.transformer
                write_random_lora(denoiser, folder / "turbo" / Path(source).name, rank=LORA_RANK)
        try:
            required_loras(wanted, tier.lora_strength, "the turbo tier")
        except BadInputError as exc:
            case = _Case(case.name, TURBO, not_run=f"turbo LoRA not on this machine ({exc})")
        yield case
    finally:
        if previous is None:
            os.environ.pop("I2V_LORA_DIR", None)
        else:
            os.environ["I2V_LORA_DIR"] = previous


def _run_cases(engine: Engine, request: GenerationRequest, cases: list[_Case], repeats: int):
    from i2v.speedups import revert_speedups

    runnable = [c for c in cases if c.not_run is None]
    runs: dict[str, list] = {c.name: [] for c in runnable}
    firsts: dict[str, float] = {}

    def one_run(case: _Case):
        engine.speedups = case.speedups
        started = time.perf_counter()
        video = engine.generate(request.with_changes(**case.changes), keep_frames=True).videos[0]
        return video, time.perf_counter() - started

    try:
        interleaved = [c for c in runnable if not c.separate]
        for case in interleaved:  # LoRA loading, hook installation: paid once, shown, not in the medians
            _, firsts[case.name] = one_run(case)
        # Interleaved repeats, medians reported: on a shared machine single timings swing by 2× and more.
        for _ in range(repeats):
            for case in interleaved:
                runs[case.name].append(one_run(case)[0])
        for case in (c for c in runnable if c.separate):
            _, firsts[case.name] = one_run(case)
            runs[case.name] = [one_run(case)[0] for _ in range(repeats)]
    finally:
        engine.speedups = Speedups()
        if engine.backend is not None and engine.backend.is_loaded:
            revert_speedups(engine.backend.pipeline)  # leave the resident pipeline as the reference found it
    return runs, firsts


def _rows(cases: list[_Case], runs: dict, firsts: dict) -> list[TransformerRow]:
    reference_videos = runs[cases[0].name]
    rows = []
    for case in cases:
        row = TransformerRow(row=case.name, kind=case.kind, not_run=case.not_run, no_psnr=case.no_psnr)
        videos = runs.get(case.name)
        if videos:
            timings = [video.record["timings_s"] for video in videos]
            params, record = videos[-1].record["params"], videos[-1].record
            row.width, row.height, row.frames = params["width"], params["height"], params["frames"]
            row.steps, row.guidance = params["steps"], params["guidance"]
            row.core_s = round(statistics.median(t["denoise"] + t["decode"] for t in timings), 3)
            row.step_s = round(statistics.median(t["denoise"] for t in timings) / params["steps"], 4)
            row.first_run_s = round(firsts[case.name], 2)
            row.step_cache = record.get("speedups", {}).get("step_cache")
            row.loras = [{k: lora.get(k) for k in ("file", "strength", "tensors_applied", "experts")}
                         for lora in record.get("loras", [])]
            if case.no_psnr is None:
                quality = psnr(videos[-1].frames, reference_videos[-1].frames)
                row.psnr_db = None if quality is None else round(quality, 2)
                row.identical_frames = quality is None
        rows.append(row)
        log.info("bench transformer %s: %s", case.name, asdict(row))
    reference = rows[0]
    for row in rows:
        if row.core_s is not None:
            row.speedup = round(reference.core_s / row.core_s, 3)
            row.step_ratio = round(row.step_s / reference.step_s, 3)
    return rows


# -- the report --------------------------------------------------------------------------------------------------

def markdown_section(rows: list[TransformerRow], meta: dict, command: str) -> str:
    device = meta["device"]
    where = f"**{device}**" + (f" ({meta['cpu_count']} cores)" if device == "CPU" else "")
    lines = [
        f"{SECTION_PREFIX}{meta['model']}",
        "",
        f"Generated by `{command}`. Device: {where}, dtype {meta['dtype']}, model `{meta['model']}` "
        f"({meta['family']}). Versions: {', '.join(f'{k} {v}' for k, v in meta.get('versions', {}).items())}.",
        f"Preset `{meta['preset']}` ({meta['size']}: width×height × frames × steps, guidance {meta['guidance']:g}), "
        f"seed {meta['seed']}, our engine against itself (no plain-pipeline baseline for this family yet). "
        f"Warm-up: {meta['warm_up']}. Medians of {meta['repeats']} runs, interleaved row by row with the reference "
        "(compile runs after, alone).",
    ]
    if meta.get("note"):
        lines.append(f"Note: {meta['note']}")
    if device == "CPU":
        lines.append(f"No GPU: absolute times are a {meta['cpu_count']}-core CPU's and mean nothing for a GPU; only "
                     "the ratios mean anything, and on a toy model whose step takes milliseconds even they are "
                     "noisy (decode and fixed per-call costs weigh more than on a real model).")
    lines += [
        "",
        "| row | size × frames × steps | denoise+decode s | s/step | vs reference (whole video) | s/step vs "
        "reference | PSNR vs reference | first run s | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.not_run:
            lines.append(f"| {r.row} | – | – | – | – | – | – | – | not run: {r.not_run} |")
            continue
        quality = r.no_psnr or ("identical" if r.identical_frames else f"{r.psnr_db:.1f} dB")
        lines.append(
            f"| {r.row} | {r.width}×{r.height} × {r.frames} × {r.steps} | {r.core_s:.3f} | {r.step_s:.4f} | "
            f"{r.speedup:.2f}× | {r.step_ratio:.3f} | {quality} | {r.first_run_s:.2f} | {_notes(r, device)} |")
    lines += [
        "",
        "\"vs reference\" is the reference's denoise+decode time over the row's (> 1: faster); \"s/step vs "
        f"reference\" the row's time per step over the reference's (the LoRA target: ≤ {1 + LORA_OVERHEAD_TARGET_PCT / 100:.2f}, "
        f"i.e. ≤ {LORA_OVERHEAD_TARGET_PCT:g} % per step). Once the LoRA is loaded the reference runs with its "
        "adapters disabled (PEFT then calls the base layers directly), as a user's next job without a LoRA does. "
        "The step cache computes the first 3 steps, then every N-th from the 5th (diffusers' TaylorSeer "
        "schedule): on few steps, every 2nd and every 3rd can compute as many calls. The turbo row is the whole "
        "video at the same size and frames with the tier's steps, LoRA and no guidance pass; its s/step carries "
        "the per-video costs (image and text encoding) over fewer steps. PSNR on random weights measures drift "
        "and the cache's approximation error, not how a trained model's video looks.",
        "",
    ]
    return "\n".join(lines)


def _notes(row: TransformerRow, device: str) -> str:
    notes = []
    if row.kind == "lora" and row.step_ratio is not None:
        overhead = 100 * (row.step_ratio - 1)
        # The target is about real models on a GPU: on a toy model on a CPU, PEFT's fixed cost per layer call
        # weighs far more than its rank-32 matmuls would next to a full-size layer.
        verdict = "not judged on a CPU" if device == "CPU" else \
            "met" if overhead <= LORA_OVERHEAD_TARGET_PCT else "**not met**"
        lora = row.loras[0] if row.loras else {}
        notes.append(f"{overhead:+.1f} % per step (target ≤ {LORA_OVERHEAD_TARGET_PCT:g} %: {verdict}); "
                     f"{lora.get('tensors_applied', '?')} tensors"
                     f"{' into both experts' if lora.get('experts') == 2 else ''}")
    if isinstance(row.step_cache, dict) and "computed" in row.step_cache:
        experts = row.step_cache["denoisers"]
        notes.append(f"{row.step_cache['computed']} attention calls computed, {row.step_cache['predicted']} "
                     f"predicted ({'both experts' if experts == 2 else f'{experts} transformer'})")
    if row.kind == TURBO:
        notes.append(f"guidance {row.guidance:g}; {', '.join(lora['file'] for lora in row.loras)}")
    return "; ".join(notes) or "–"


def write_transformer_outputs(rows: list[TransformerRow], meta: dict, command: str, markdown_path: Path | None,
                              json_path: Path | None) -> str:
    """This model's section spliced into ``markdown_path``: replaced if there, else appended; the rest (the
    I2VGen-XL table, "Off the GPU", other models' sections) kept. The rows as JSON. Returns the section."""
    section = markdown_section(rows, meta, command)
    if markdown_path is not None:
        existing = markdown_path.read_text(encoding="utf-8") if markdown_path.exists() else "# Benchmarks\n"
        # With its line end: "… tiny-wan" must not match "… tiny-wan22-ti2v".
        title = f"{SECTION_PREFIX}{meta['model']}\n"
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(splice_section(existing, section, title=title), encoding="utf-8")
    if json_path is not None:
        figures = {"meta": meta, "rows": [asdict(r) for r in rows]}
        json_path.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return section


def transformer_sections(document: str) -> list[str]:
    """Every transformer section of ``document``, so a rewrite of the I2VGen-XL part keeps them."""
    sections, start = [], document.find(SECTION_PREFIX)
    while start >= 0:
        end = document.find("\n## ", start + len(SECTION_PREFIX))
        sections.append((document[start:] if end < 0 else document[start:end + 1]).rstrip("\n") + "\n")
        start = document.find(SECTION_PREFIX, start + len(SECTION_PREFIX))
    return sections
