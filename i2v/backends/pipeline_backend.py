"""What every backend built on a diffusers pipeline shares: finding the weights (folder or hub), loading once and
keeping the pipeline warm, moving or casting it in place when only the device or dtype changes, CPU offload, the
VAE settings around a decode, and freeing it. A family adds its spec, its folder loader, its download and its
denoise/decode calls."""
from __future__ import annotations

import contextlib
import gc
import logging
import time
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path

from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.planning.plan import ExecutionPlan
from i2v.backends.base import LoadReport, ModelBackend
from i2v.backends.gguf_file import record_for
from i2v.backends.hub import download_or_cached, looks_like_hub_id

log = logging.getLogger(__name__)

def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


class PipelineBackend(ModelBackend):
    example_hub_id: str  # named in the message for a model that is neither a folder nor a hub id
    hub_allow_patterns: list[str]  # the files of a hub snapshot the family's pipeline needs
    takes_transformer_file = False  # True: ``_load_folder`` loads ``transformer_file`` (a GGUF) as the transformer

    def __init__(self, model_id: str):
        from i2v.speedups import Speedups

        self.model_id = model_id
        self._pipe = None
        self._loaded_key: tuple[str, str, tuple] | None = None
        self._loaded_plan: ExecutionPlan | None = None
        self._load_dtype: str | None = None  # the dtype the weights were read in
        self._kept_dtypes: dict[tuple[str, str], object] = {}  # tensors a load in that dtype kept in another one
        self._report: LoadReport | None = None
        self.transformer_file: str | None = None  # a GGUF path or hub file: part of the model's identity
        self.speedups = Speedups()
        self._speedup_notes: list[str] = []  # what apply_speedups changed on the resident pipeline
        self._step_cache_stats: dict | None = None  # the last denoise's, when a step cache ran
        self._loras = None  # the LoRA adapters in the resident pipeline (i2v.loras.adapters.ResidentLoras)

    # -- what a family provides -------------------------------------------------------------------------
    @abstractmethod
    def _load_folder(self, folder: Path, dtype: str):
        """Load every component from ``folder``: (pipeline, warnings, component class names)."""

    def _download(self) -> tuple[Path, str, str | None]:
        """The hub model in the local cache (fetched unless offline): (folder, "hub", commit)."""
        return download_or_cached(self.model_id, self.hub_allow_patterns)

    def _extra_warnings(self) -> tuple[Finding, ...]:
        return ()

    # -- loading -----------------------------------------------------------------------------------------
    def load(self, plan: ExecutionPlan) -> LoadReport:
        key = (plan.device, plan.dtype, placement(plan))
        if self._pipe is not None and self._loaded_key == key:
            return self._report
        if self._pipe is not None and self._loaded_key[2] == placement(plan) and self._castable_to(plan):
            # Same offload mode: moving/casting in place is much cheaper than reading the weights again.
            self._pipe.to(plan.device)
            self._cast_as_loaded(plan.dtype)
            self._loaded_key = key
            self._loaded_plan = plan
            return self._report
        self.unload()
        started = time.perf_counter()
        folder, source, revision = self._resolve_folder()
        pipe, warnings_found, components = self._load_folder(folder, plan.dtype)
        self._kept_dtypes = _dtypes_kept(pipe, plan.dtype)
        self._load_dtype = plan.dtype
        self._place(pipe, plan)
        pipe.set_progress_bar_config(disable=True)  # progress goes through our callbacks, not tqdm on stderr
        self._pipe = pipe
        self._speedup_notes = []
        self._apply_speedups()
        self._loaded_key = key
        self._loaded_plan = plan
        self._report = LoadReport(
            model_id=self.model_id,
            source=source,
            revision=revision,
            warnings=tuple(warnings_found) + self._extra_warnings(),
            load_seconds=time.perf_counter() - started,
            components=components,
            transformer_file=record_for(self.transformer_file) if self.transformer_file else None,
        )
        for warning in self._report.warnings:
            log.warning("model %s: %s", self.model_id, warning.message)
        log.info("loaded %s (%s, revision %s) on %s as %s in %.1f s", self.model_id, source, revision,
                 plan.device, plan.dtype, self._report.load_seconds)
        return self._report

    def _place(self, pipe, plan: ExecutionPlan) -> None:
        if plan.fp8_weights:
            store_in_fp8(pipe.transformer, plan.dtype)
        if plan.cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=plan.device)
        elif plan.cpu_offload == "group":
            _stream_from_cpu(pipe, plan.device)
        else:
            pipe.to(plan.device)

    def _resolve_folder(self) -> tuple[Path, str, str | None]:
        folder = Path(self.model_id).expanduser()
        if folder.is_dir():
            return folder, "folder", None
        if not looks_like_hub_id(self.model_id):
            raise BadInputError(
                f"Model '{self.model_id}' is neither a local folder nor a hub id like '{self.example_hub_id}'."
            )
        return self._download()

    # -- LoRAs -------------------------------------------------------------------------------------------
    def use_loras(self, loras: tuple) -> tuple[list[dict], list[Finding]]:
        if not self.spec.takes_loras:
            return super().use_loras(loras)
        from i2v.loras.adapters import ResidentLoras
        from i2v.loras.files import find_lora

        if self._loras is None:
            if not loras:
                return [], []
            self._loras = ResidentLoras()
        # A hub file the job found only in name is fetched now (prepare never downloads).
        files = tuple(lora if lora.path else find_lora(lora.choice(), download=True) for lora in loras)
        return self._loras.use(self.pipeline, files, self.spec.family)

    # -- speedups ----------------------------------------------------------------------------------------
    def configure_speedups(self, speedups) -> None:
        if speedups == self.speedups:
            return
        self.speedups = speedups
        if self._pipe is not None:
            self._apply_speedups()

    def _apply_speedups(self) -> None:
        from i2v.speedups import apply_speedups

        # What the last change did to the resident pipeline (not a history: a record describes its own run).
        self._speedup_notes = apply_speedups(self._pipe, self.speedups)

    def speedups_record(self) -> dict:
        record = {**self.speedups.to_dict(), "applied": list(self._speedup_notes)}
        if self.speedups.step_cache_interval > 1:
            record["step_cache"] = self._step_cache_stats or "not run (no denoising since the setting changed)"
        return record

    @contextlib.contextmanager
    def transformer_cache_for_run(self) -> Iterator[None]:
        """The transformer families' step cache around one pipeline call (``speedups.transformer_cache``); what ran
        goes into the record."""
        from i2v.speedups.transformer_cache import transformer_step_cache

        with transformer_step_cache(self.pipeline, self.speedups.step_cache_interval) as stats:
            yield
        self._step_cache_stats = stats.to_dict() if self.speedups.step_cache_interval > 1 else None

    # -- running -----------------------------------------------------------------------------------------
    @property
    def pipeline(self):
        if self._pipe is None:
            raise RuntimeError("model not loaded")
        return self._pipe

    @property
    def is_loaded(self) -> bool:
        return self._pipe is not None

    def folder(self) -> Path:
        """Where the model's files are: a built-in model is built on first use, a hub model fetched unless cached."""
        return self._resolve_folder()[0]

    def _movable(self, plan: ExecutionPlan) -> bool:
        # GGUF layers dequantize to the compute dtype they were loaded with: another dtype means loading again.
        return movable(plan) and self.transformer_file is None

    def set_dtype(self, dtype: str) -> None:
        if not self._castable_to(self._loaded_plan.with_dtype(dtype)):
            self.load(self._loaded_plan.with_dtype(dtype))  # read again, as a fresh load in ``dtype`` would be
            return
        self._cast_as_loaded(dtype)
        self._loaded_plan = self._loaded_plan.with_dtype(dtype)
        if self._loaded_key is not None:
            self._loaded_key = (self._loaded_key[0], dtype, self._loaded_key[2])

    def _castable_to(self, plan: ExecutionPlan) -> bool:
        """In place only where a fresh load's dtypes are known: not under group offload or fp8 (hooks hold the
        weights), and not from a float32 load to a half precision (a float32 load keeps nothing apart, so which
        tensors a half-precision load keeps in float32 is unknown)."""
        return self._movable(plan) and (self._load_dtype != "float32" or plan.dtype == "float32")

    def _cast_as_loaded(self, dtype: str) -> None:
        """Every floating tensor to ``dtype``, except those the load kept in their own dtype."""
        wanted = torch_dtype(dtype)
        for component, module in _modules(self.pipeline):
            for name, tensor in _floating_tensors(module):
                target = self._kept_dtypes.get((component, name), wanted)
                if tensor.dtype != target:
                    tensor.data = tensor.data.to(target)

    @contextlib.contextmanager
    def _vae_for_decode(self, plan: ExecutionPlan, dtype: str | None) -> Iterator[tuple[object, object]]:
        """The VAE with the plan's slicing/tiling and, for a decode-only retry, ``dtype``; everything is put back
        afterwards. Yields (vae, the dtype latents must have)."""
        vae = self.pipeline.vae
        original = vae.dtype
        target = torch_dtype(dtype) if dtype else original
        if plan.vae_slicing:
            vae.enable_slicing()
        if plan.vae_tiling:
            vae.enable_tiling()
        try:
            if target != original:
                vae.to(dtype=target)
            yield vae, target
        finally:
            if target != original:
                vae.to(dtype=original)
            vae.disable_slicing()
            vae.disable_tiling()

    def _encode_for_preview(self, pixels):
        """The VAE's mode latents of ``pixels`` (its own input layout), float32, for fitting the preview map. On the
        execution device (an offloaded VAE is brought there by its encode hook, then offloaded again)."""
        import torch

        pipe = self.pipeline
        with torch.no_grad():
            latents = pipe.vae.encode(pixels.to(device=pipe._execution_device, dtype=pipe.vae.dtype)).latent_dist
            mode = latents.mode().float()
        if getattr(pipe, "_all_hooks", None):  # model CPU offload: do not leave the VAE on the GPU for the run
            pipe.maybe_free_model_hooks()
        return mode

    def count_tokens(self, text: str) -> int | None:
        if self._pipe is None:
            return None
        return len(self._pipe.tokenizer(text, truncation=False).input_ids)

    def unload(self) -> None:
        if self._pipe is None:
            return
        self._pipe = None
        self._loaded_key = None
        self._loras = None  # its adapters went with it
        gc.collect()
        with contextlib.suppress(ImportError):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        log.info("unloaded %s", self.model_id)


def _modules(pipe):
    import torch

    return [(name, module) for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)]


def _floating_tensors(module):
    import itertools

    return ((name, tensor) for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers())
            if tensor.is_floating_point())


def _dtypes_kept(pipe, dtype: str) -> dict[tuple[str, str], object]:
    """The tensors a load in ``dtype`` left in another dtype: the modules a model keeps in float32
    (``_keep_in_fp32_modules``), buffers computed at construction (Qwen2-VL's and Wan's rotary tables), a VAE the
    family runs in float32. Casting them with the rest would round them for good."""
    wanted = torch_dtype(dtype)
    return {(component, name): tensor.dtype for component, module in _modules(pipe)
            for name, tensor in _floating_tensors(module) if tensor.dtype != wanted}


def _stream_from_cpu(pipe, device: str) -> None:
    """Every model waits in pinned CPU RAM and comes to ``device`` in parts while it runs, the next part copied on a
    CUDA stream meanwhile: the transformer and the VAE block by block, the text encoders layer by layer (their
    blocks sit inside one submodule, which block level would bring over whole: 10-24 GiB for UMT5 or Gemma)."""
    from diffusers.hooks import apply_group_offloading

    for name, component in _modules(pipe):
        options = group_offload_options(device, by_layer=name.startswith("text_encoder"))
        if hasattr(component, "enable_group_offload"):
            component.enable_group_offload(**options)
        else:
            apply_group_offloading(module=component, **options)


def store_in_fp8(transformer, dtype: str) -> None:
    """The transformer's weights stored in fp8 e4m3, each layer upcast to ``dtype`` when it runs."""
    import torch

    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch_dtype(dtype))


def group_offload_options(device: str, *, by_layer: bool = False) -> dict:
    """diffusers' group offload as we stream a model from pinned CPU RAM: block by block (layer by layer for text
    encoders), the next part copied on a CUDA stream while one runs."""
    import torch

    return dict(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                offload_type="leaf_level" if by_layer else "block_level",
                num_blocks_per_group=None if by_layer else 1, use_stream=device.startswith("cuda"))


def placement(plan: ExecutionPlan) -> tuple[str, bool]:
    """What decides how the weights are placed: changing it means loading again."""
    return plan.cpu_offload, plan.fp8_weights


def movable(plan: ExecutionPlan) -> bool:
    """Whether a loaded pipeline can change device and dtype in place: not under group offload or fp8 storage, whose
    hooks hold the weights' places and dtypes."""
    return plan.cpu_offload in ("none", "model") and not plan.fp8_weights


def latent_run_arguments(inputs, generator, on_step) -> dict:
    """The pipeline-call arguments every transformer backend shares: the request's shape, steps and guidance, the
    seeded generator, latents out (the engine decodes them itself) and each finished step reported to ``on_step``."""
    return dict(
        height=inputs.height,
        width=inputs.width,
        num_frames=inputs.frames,
        num_inference_steps=inputs.steps,
        guidance_scale=inputs.guidance,
        generator=generator,
        output_type="latent",
        callback_on_step_end=step_end_reporter(on_step, inputs.steps),
        callback_on_step_end_tensor_inputs=["latents"],
    )


def step_end_reporter(on_step, steps: int):
    """diffusers' ``callback_on_step_end`` that reports each finished step (and its latents) to ``on_step``.
    Raising there (cancel, NaN) leaves the pipeline at once, which is what the engine wants."""

    def step_end(_pipe, index, _timestep, tensors):
        on_step(index + 1, steps, tensors["latents"])
        return tensors

    return step_end
