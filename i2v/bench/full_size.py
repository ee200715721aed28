"""``python -m i2v bench --full-size MODEL [--gpu-memory GiB]``: a Wan-class transformer at its real size, random
weights, placed as the planner plans it, its denoising measured on the GPU against the planner's prediction.

Why the transformer alone: it is the stage that sets the peak of these models at their targets (docs/VRAM.md), and
building it straight on the device takes seconds, where a whole random pipeline saved through ``save_pretrained``
(an 11 GB text encoder, two 28 GB experts) would take most of the GPU runbook's 15 minutes. The measured figure is
``torch.cuda.max_memory_allocated`` over the denoising steps: the transformer weights the plan keeps on the GPU
plus the activations, which is exactly the prediction's denoise stage without the other components (the VAE that
model offload keeps resident is left out of both). ``--gpu-memory`` plans for a smaller card and caps this process's
share of the GPU to it (``set_per_process_memory_fraction``), so a plan that does not fit fails here as it would there.

Inputs are what the pipeline hands its transformer: latents of the plan's size (``in_channels`` channels: noise,
condition and mask), 512 prompt-embedding tokens, Wan 2.1's 257 image tokens, TI2V-5B's per-token timestep; two calls
per step with guidance (Wan calls the transformer twice, batch 1). A14B's experts take half the steps each.
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass

from i2v.errors import BadInputError

log = logging.getLogger(__name__)

GIB = 2**30
TEXT_TOKENS = 512  # UMT5 prompt embeddings, padded to the pipelines' max_sequence_length
IMAGE_TOKENS = 257  # Wan 2.1's CLIP ViT-H/14 image embeddings (256 patches and the class token)
INIT_STD = 0.02  # random weights small enough that 40 blocks of bf16 stay finite


@dataclass(frozen=True)
class FullSizeModel:
    model_id: str  # what the planner and the spec know it by
    config_module: str  # the family's configuration-only module
    config_name: str  # the transformer's real configuration in it
    image_tokens: int = 0  # image-encoder tokens the transformer cross-attends to (Wan 2.1 only)
    timestep_per_token: bool = False  # Wan 2.2 TI2V-5B's expand_timesteps


FULL_SIZE_MODELS = {
    "wan": FullSizeModel("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "i2v.backends.wan.config", "TRANSFORMER_CONFIG",
                         image_tokens=IMAGE_TOKENS),
    "wan22-ti2v": FullSizeModel("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "i2v.backends.wan22.config",
                                "TI2V_5B_TRANSFORMER_CONFIG", timestep_per_token=True),
    "wan22-a14b": FullSizeModel("Wan-AI/Wan2.2-I2V-A14B-Diffusers", "i2v.backends.wan22.config",
                                "A14B_TRANSFORMER_CONFIG"),
}


@dataclass
class FullSizeRow:
    model: str
    card_gib: float | None  # the card planned for (None: the GPU itself)
    width: int
    height: int
    frames: int
    tokens: int
    placement: str  # "all on the GPU" | "model offload" | "group offload", "+ fp8 weights"
    predicted_weights_gib: float
    predicted_activations_gib: float
    predicted_gib: float  # weights + activations of the denoise stage (no slack, no CUDA context)
    predicted_peak_gib: float  # the whole plan's peak with slack and context, as `plan` prints it
    measured_gib: float | None = None  # max_memory_allocated over the steps
    reserved_gib: float | None = None  # max_memory_reserved (the allocator's pools)
    error_pct: float | None = None  # (measured - predicted) / predicted
    step_s: float | None = None  # median seconds per denoising step (both guidance calls)
    steps: int = 0
    failure: str | None = None  # e.g. an out-of-memory error: the plan did not fit after all


def measure_full_size(model: str, *, preset: str = "balanced", gpu_memory_gib: float | None = None, steps: int = 2,
                      device: str = "cuda", config_changes: dict | None = None) -> FullSizeRow:
    """One row. ``config_changes`` shrinks the architecture (tests on the CPU run the same code on a toy width)."""
    import torch

    entry = _entry(model)
    spec, width, height, frames, decision = _plan(entry, preset, gpu_memory_gib, device)
    plan, estimate = decision.plan, decision.estimate
    profile = spec.memory
    weights = _predicted_transformer_weights(profile, plan)
    row = FullSizeRow(
        model=model, card_gib=gpu_memory_gib, width=decision.width, height=decision.height, frames=decision.frames,
        tokens=profile.tokens(decision.width, decision.height, decision.frames), placement=_placement(plan),
        predicted_weights_gib=weights / GIB, predicted_activations_gib=estimate.unet_activation_bytes / GIB,
        predicted_gib=(weights + estimate.unet_activation_bytes) / GIB, predicted_peak_gib=estimate.peak_gib,
        steps=steps)
    on_cuda = device.startswith("cuda")
    if on_cuda:
        _cap_to_card(torch, gpu_memory_gib)
        torch.cuda.reset_peak_memory_stats()
    config = {**_config(entry), **(config_changes or {})}
    try:
        experts = [_build(config, plan, device) for _ in range(profile.experts)]
        inputs = _inputs(entry, config, profile, decision, device)
        row.step_s = _denoise(experts, inputs, plan, device, steps)
    except torch.OutOfMemoryError as exc:
        row.failure = f"out of memory: {str(exc).splitlines()[0]}"
    if on_cuda:
        row.measured_gib = torch.cuda.max_memory_allocated() / GIB
        row.reserved_gib = torch.cuda.max_memory_reserved() / GIB
        row.error_pct = round(100 * (row.measured_gib - row.predicted_gib) / row.predicted_gib, 1)
    return row


def _entry(model: str) -> FullSizeModel:
    if model not in FULL_SIZE_MODELS:
        raise BadInputError(f"--full-size takes {', '.join(FULL_SIZE_MODELS)}; got {model!r}.")
    return FULL_SIZE_MODELS[model]


def _config(entry: FullSizeModel) -> dict:
    import importlib

    return dict(getattr(importlib.import_module(entry.config_module), entry.config_name))


def _plan(entry: FullSizeModel, preset_name: str, gpu_memory_gib: float | None, device: str):
    from i2v.backends import identify
    from i2v.engine.presets import get_preset
    from i2v.engine.resolve import shape_for
    from i2v.gpu.hardware import FixedGpuInfo
    from i2v.gpu.monitor import GpuMonitor
    from i2v.planning.planner import MemoryPlanner

    spec = identify(entry.model_id, None).backend.spec
    preset = get_preset(preset_name, preset_key=spec.preset_key)
    width, height, frames, _, _ = shape_for(spec, preset, frames=None, resolution=None, width=None, height=None,
                                            aspect=16 / 9)
    if gpu_memory_gib is not None:
        gpu_info = FixedGpuInfo.single(name=f"a {gpu_memory_gib:g} GiB GPU", total_gib=gpu_memory_gib, bf16=True,
                                       ram_gib=None)
    elif device.startswith("cuda"):
        gpu_info = GpuMonitor()
    else:
        raise BadInputError("On the CPU give --gpu-memory: the card to plan for.")
    decision = MemoryPlanner(gpu_info).plan(spec, width, height, frames, device=None, dtype="bfloat16")
    return spec, width, height, frames, decision


def _predicted_transformer_weights(profile, plan) -> int:
    """The denoise stage's transformer weights on the GPU (``TransformerMemoryProfile``): every expert with
    everything on the GPU, the running expert with model offload, the streamed part with group offload."""
    weights = profile.weights(plan.dtype, fp8_weights=plan.fp8_weights)
    if plan.cpu_offload == "group":
        return profile.streamed_transformer_bytes(plan.dtype, plan.fp8_weights)
    if plan.cpu_offload == "model":
        return weights["transformer"]
    return weights["transformer"] + weights["idle_experts"]


def _placement(plan) -> str:
    words = {"none": "all on the GPU", "model": "model offload", "group": "group offload"}[plan.cpu_offload]
    return words + (" + fp8 weights" if plan.fp8_weights else "")


def _cap_to_card(torch, gpu_memory_gib: float | None) -> None:
    if gpu_memory_gib is None:
        return
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gpu_memory_gib * GIB / total))


def _build(config: dict, plan, device: str):
    """The transformer with random weights: parameters made empty where they will live, then filled; the buffers (the
    rotary tables) computed for real, as loading would keep them."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights(include_buffers=False):
        model = WanTransformer3DModel(**config)
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    keep_fp32 = set(model._keep_in_fp32_modules or ())
    model.to(torch.bfloat16)  # still on the meta device: the dtypes are chosen before any memory is taken
    for name, parameter in model.named_parameters():
        if keep_fp32.intersection(name.split(".")):
            parameter.data = parameter.data.float()
    home = device if plan.cpu_offload == "none" else "cpu"
    model.to_empty(device=home)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, INIT_STD)
        for name, buffer in buffers.items():
            model.get_buffer(name).data = buffer.to(home)
    model.eval().requires_grad_(False)
    _place(model, plan, device)
    return model


def _place(model, plan, device: str) -> None:
    """As the backends place a loaded transformer (``pipeline_backend``): fp8 storage first, then the offload."""
    from i2v.backends.pipeline_backend import group_offload_options, store_in_fp8

    if plan.fp8_weights:
        store_in_fp8(model, plan.dtype)
    if plan.cpu_offload == "group":
        model.enable_group_offload(**group_offload_options(device))


def _inputs(entry: FullSizeModel, config: dict, profile, decision, device: str) -> dict:
    import torch

    scale = profile.vae_scale_factor
    latent_frames = profile.latent_frames(decision.frames)
    shape = (1, config["in_channels"], latent_frames, decision.height // scale, decision.width // scale)
    generator = torch.Generator(device="cpu").manual_seed(0)

    def noise(*size):
        return torch.randn(*size, generator=generator, dtype=torch.float32).to(device, torch.bfloat16)

    inputs = {"hidden_states": noise(*shape), "encoder_hidden_states": noise(1, TEXT_TOKENS, config["text_dim"])}
    if entry.image_tokens:
        inputs["encoder_hidden_states_image"] = noise(1, entry.image_tokens, config["image_dim"])
    if entry.timestep_per_token:
        patch = config["patch_size"]
        tokens = latent_frames * (shape[3] // patch[1]) * (shape[4] // patch[2])
        inputs["timestep"] = torch.full((1, tokens), 500.0, device=device)
    else:
        inputs["timestep"] = torch.full((1,), 500.0, device=device)
    return inputs


def _denoise(experts: list, inputs: dict, plan, device: str, steps: int) -> float:
    """``steps`` steps of two transformer calls each (conditional and unconditional); the experts take turns as
    A14B's do (the first half of the steps on the high-noise one). Model offload moves the idle expert off."""
    import torch

    times = []
    for step in range(steps):
        expert = experts[min(step * len(experts) // max(steps, 1), len(experts) - 1)]
        if plan.cpu_offload == "model":
            for other in experts:
                other.to(device if other is expert else "cpu")
        _synchronize(torch, device)
        started = time.perf_counter()
        with torch.inference_mode():
            for _ in range(2):
                output = expert(**inputs, return_dict=False)[0]
                del output
        _synchronize(torch, device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _synchronize(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def markdown_section(rows: list[FullSizeRow], device: str, command: str) -> str:
    lines = [
        "## Full-size transformers on a GPU: predicted vs measured",
        "",
        f"Measured on {device} by `{command}` (random weights at the real size, the planner's own placement; "
        "the denoise stage's transformer weights + activations, no slack, no CUDA context).",
        "",
        "| model | card | size × frames | tokens | placement | predicted GiB | measured GiB | error | s/step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        card = f"{row.card_gib:g} GiB" if row.card_gib else "this GPU"
        measured = f"{row.measured_gib:.2f}" if row.measured_gib is not None else "–"
        error = f"{row.error_pct:+.1f} %" if row.error_pct is not None else "–"
        speed = f"{row.step_s:.2f}" if row.step_s is not None else (row.failure or "–")
        lines.append(f"| {row.model} | {card} | {row.width}×{row.height} × {row.frames} | {row.tokens:,} | "
                     f"{row.placement} | {row.predicted_gib:.2f} | {measured} | {error} | {speed} |")
    return "\n".join(lines) + "\n"


def row_dict(row: FullSizeRow) -> dict:
    return dataclasses.asdict(row)


def run_full_size_bench(models: list[str], *, preset: str, gpu_memory_gib: float | None, steps: int,
                        markdown_path, json_path, command: str) -> list[FullSizeRow]:
    """Each model in turn, its GPU memory freed between them; the table spliced into ``markdown_path``."""
    import gc
    import json

    import torch

    from i2v.bench.latency import splice_section

    for model in models:
        _entry(model)  # every name checked before the first (minutes-long) build
    if not 1 <= steps <= 20:
        raise BadInputError("--steps must be 1..20 for --full-size.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        raise BadInputError("--full-size measures GPU memory: it needs a CUDA GPU (tools/gpu_checks.sh full-size).")
    logging.getLogger("diffusers").setLevel(logging.ERROR)  # its "kept in float32" advice: we keep them so
    rows = []
    for model in models:
        rows.append(measure_full_size(model, preset=preset, gpu_memory_gib=gpu_memory_gib, steps=steps))
        log.info("full size %s: %s", model, rows[-1])
        gc.collect()
        torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(0)
    if markdown_path is not None:
        document = markdown_path.read_text() if markdown_path.exists() else "# Benchmarks\n"
        section = markdown_section(rows, name, command)
        markdown_path.write_text(splice_section(document, section, section.splitlines()[0] + "\n"))
    if json_path is not None:
        json_path.write_text(json.dumps({"device": name, "rows": [row_dict(row) for row in rows]}, indent=2))
    return rows
