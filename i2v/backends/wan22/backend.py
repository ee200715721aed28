"""Wan 2.2 image-to-video through diffusers' ``WanImageToVideoPipeline``: TI2V-5B (``expand_timesteps``: the
picture's latents replace the first latent frame and that frame's timestep is 0) and I2V-A14B (a high-noise expert
``transformer`` for timesteps ≥ ``boundary_ratio`` × 1000, then the low-noise ``transformer_2``; an optional last
frame). From a hub id or a local folder (``loading.py`` tells the two apart and checks them).

The sampler's shift is the checkpoint's own (Wan 2.2 uses 5.0 at every size for both models: no per-size rule as in
Wan 2.1). Both experts run with the request's guidance (Wan's I2V-A14B config: 3.5 for both).
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

from i2v.backends.base import DenoiseInputs, LoadReport, StepCallback
from i2v.backends.normalized_latents import decode_normalized, normalize
from i2v.backends.pipeline_backend import PipelineBackend, latent_run_arguments, torch_dtype
from i2v.backends.wan22.loading import A14B_EXAMPLE, HUB_ALLOW_PATTERNS, TI2V_EXAMPLE, load_wan22_from_folder
from i2v.backends.wan22.spec import A14B_SPEC, TEXT_TOKENS, TI2V_5B_SPEC
from i2v.planning.plan import ExecutionPlan

log = logging.getLogger(__name__)


class Wan22Backend(PipelineBackend):
    """What both Wan 2.2 checkpoints share; ``kind`` says which one the folder must be."""

    kind: str
    hub_allow_patterns = HUB_ALLOW_PATTERNS

    def _load_folder(self, folder: Path, dtype: str):
        return load_wan22_from_folder(folder, dtype, self.spec, self.kind)

    def load(self, plan: ExecutionPlan) -> LoadReport:
        key = (plan.device, plan.dtype, plan.cpu_offload)
        if self._pipe is not None and self._loaded_key not in (None, key) and self._loaded_key[2] == plan.cpu_offload:
            # The base class would .to(device, dtype) everything, the float32 VAE and the transformers' float32
            # modules included: move, then cast the way a fresh load would have.
            self._pipe.to(plan.device)
            self.set_dtype(plan.dtype)
            self._loaded_key = key
            return self._report
        return super().load(plan)

    def set_dtype(self, dtype: str) -> None:
        pipe = self.pipeline
        for name in ("transformer", "transformer_2", "text_encoder"):  # the VAE stays in float32
            model = getattr(pipe, name, None)
            if model is not None:
                cast_as_loaded(model, torch_dtype(dtype))
        if self._loaded_key is not None:
            self._loaded_key = (self._loaded_key[0], dtype, self._loaded_key[2])

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback):
        import torch

        _ensure_prompt_cleaner()
        # A CPU generator: the same starting noise on every device. The picture's latents are the VAE's mode
        # (sample_mode="argmax"), so nothing else in the run draws random numbers.
        generator = torch.Generator("cpu").manual_seed(inputs.seed)
        with self.transformer_cache_for_run():
            output = self.pipeline(
                image=inputs.image,
                prompt=inputs.prompt,
                negative_prompt=inputs.negative_prompt or None,
                **latent_run_arguments(inputs, generator, on_step),
                **self._model_arguments(inputs),
                max_sequence_length=TEXT_TOKENS,
            )
        return output.frames  # latents (batch, channels, latent frames, height/f, width/f), float32

    def _model_arguments(self, inputs: DenoiseInputs) -> dict:
        return {}

    makes_previews = True

    def preview_latents(self, latents, inputs: DenoiseInputs):
        return latents[0]  # (1, channels, frames, h, w), per-channel normalised (48 channels for TI2V-5B)

    def encode_preview_clip(self, video):
        # The Wan 2.2 VAE patchifies its RGB input itself: the clip goes in as pixels, as the pipeline's does.
        return normalize(self.pipeline.vae, self._encode_for_preview(video))[0]

    def decode(self, latents, plan: ExecutionPlan, *, dtype: str | None = None):
        """Latents → (1, 3, frames, height, width) in [-1, 1]. The causal VAE decodes latent frame by latent frame
        with a temporal cache (frame chunks do not apply; tiling and slicing do); the Wan 2.2 VAE un-patchifies its
        output itself."""
        import torch

        with self._vae_for_decode(plan, dtype) as (vae, target), torch.no_grad():
            # The execution device, not vae.device: under model offload the VAE waits on the CPU until its hook
            # moves it.
            latents = latents.to(device=self.pipeline._execution_device, dtype=target)
            return decode_normalized(vae, latents)


class Wan22TI2VBackend(Wan22Backend):
    spec = TI2V_5B_SPEC
    kind = "ti2v-5b"
    example_hub_id = TI2V_EXAMPLE


class Wan22A14BBackend(Wan22Backend):
    spec = A14B_SPEC
    kind = "a14b"
    example_hub_id = A14B_EXAMPLE

    def _model_arguments(self, inputs: DenoiseInputs) -> dict:
        # The low-noise expert's guidance: the same value, as Wan's config (3.5 / 3.5). The last frame, when given,
        # is encoded as the clip's last frame and unmasked there (prepare_latents in pipeline_wan_i2v.py).
        return {"guidance_scale_2": inputs.guidance, "last_image": inputs.last_image}


BACKENDS = {"ti2v-5b": Wan22TI2VBackend, "a14b": Wan22A14BBackend}


def cast_as_loaded(model, dtype) -> None:
    """Cast ``model`` in place to ``dtype`` the way ``from_pretrained(dtype=...)`` loads it: the modules a diffusers
    model lists in ``_keep_in_fp32_modules`` stay float32 (Wan's rotary tables are computed at construction, so a
    plain ``.to(bf16)`` would round them for good and a run after a float32 retry would differ from a fresh one)."""
    import torch
    from diffusers import ModelMixin

    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ()) if isinstance(model, ModelMixin) else set()
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        wanted = torch.float32 if keep.intersection(name.split(".")) else dtype
        if tensor.is_floating_point() and tensor.dtype != wanted:
            tensor.data = tensor.data.to(wanted)


class _NoFtfy:
    """Stands in for ``ftfy`` when it is not installed: the text is left as it is."""

    @staticmethod
    def fix_text(text: str) -> str:
        return text


def _ensure_prompt_cleaner() -> None:
    """diffusers' Wan pipelines call ``ftfy.fix_text`` on every prompt but import ftfy only when it is installed
    (upstream: diffusers PR 12314, open in 0.42.1): without it every run fails with a NameError. The prompt is then
    used as typed. (Wan 2.1's backend does the same; each family keeps its own copy.)"""
    from diffusers.pipelines.wan import pipeline_wan_i2v

    if not hasattr(pipeline_wan_i2v, "ftfy"):
        pipeline_wan_i2v.ftfy = _NoFtfy
        log.info("ftfy is not installed: Wan prompts are used as typed (install ftfy to repair mis-encoded text)")
