"""LTX-2 image-to-video (``Lightricks/LTX-2``) through diffusers' ``LTX2ImageToVideoPipeline``, from a hub id or a local
folder whose model_index.json names that pipeline. It makes sound with the picture: ``denoise`` returns the video
and audio latents, ``decode`` the frames and the waveform (``WithAudio``); the engine muxes the track into the mp4.

We call the pipeline with ``output_type="latent"`` (it then returns both latents, denormalised) and decode as its
own non-latent path does: the video VAE (with a zero decode timestep when the VAE is timestep-conditioned, the
pipeline's default), then the audio VAE to a mel spectrogram and the vocoder to a waveform at its
``output_sampling_rate``.

A tier may run it in two stages (``inputs.two_stage``, diffusers' LTX-2 docs, "Two-stages Generation"): the first
stage at half the sides with the tier's steps and guidance, the ×2 latent upsampler (``upsampler``), then a refinement
at full size on diffusers' ``STAGE_2_DISTILLED_SIGMA_VALUES`` without guidance, with the distilled LoRA active for it
alone (``stages``). A tier may also name a fixed schedule (``inputs.sigmas``: the distilled one, 8 steps, for the
turbo tier). Either way the record says which path ran (``denoising_record``).

Not used: prompt enhancement (off by default upstream).
"""
from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from PIL import Image

from i2v.backends.base import DenoiseInputs, StepCallback, WithAudio
from i2v.backends.ltx2 import stages
from i2v.backends.ltx2.loading import HUB_ALLOW_PATTERNS, load_ltx2_from_folder
from i2v.backends.ltx2.spec import LTX2_SPEC, TEXT_TOKENS
from i2v.backends.ltx2.upsampler import load_upsampler, upsample
from i2v.backends.pipeline_backend import PipelineBackend, latent_run_arguments, torch_dtype
from i2v.errors import VideoEncodeError
from i2v.planning.plan import ExecutionPlan

log = logging.getLogger(__name__)

# Spatio-temporal guidance perturbs one transformer block: upstream recommends block 29 for LTX-2.0 and 28 for
# LTX-2.3 (the pipeline's docstring); the pipeline's default is LTX-2.3's.
STG_BLOCK_LTX20, STG_BLOCK_LTX23 = 29, 28
# The H.264 quality the picture is re-compressed at before it conditions the video: what LTX-2.0 was trained on
# (diffusers' DEFAULT_IMAGE_CRF for Gemma 3 text encoders).
CONDITIONING_CRF = 33
_FFMPEG_TIMEOUT_S = 60


class LTX2Backend(PipelineBackend):
    spec = LTX2_SPEC
    example_hub_id = "Lightricks/LTX-2"
    hub_allow_patterns = HUB_ALLOW_PATTERNS

    def _load_folder(self, folder: Path, dtype: str):
        return load_ltx2_from_folder(folder, dtype, self.spec)

    def __init__(self, model_id: str):
        super().__init__(model_id)
        self._job_loras: tuple = ()  # the job's LoRAs; the refinement stage adds its own to them
        self._upsampler: tuple[Path, object, list] | None = None  # (folder, model, weight-key findings), kept warm
        self._denoising: dict = {}  # the last denoise's path, for its record

    def use_loras(self, loras: tuple):
        self._job_loras = tuple(loras)
        return super().use_loras(loras)

    def denoising_record(self) -> dict:
        return dict(self._denoising)

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback) -> WithAudio:
        import torch

        # A CPU generator gives the same starting noise on every device for a seed; the picture's latents are the
        # VAE's mode (sample_mode="argmax"), so nothing else in the run draws random numbers.
        generator = torch.Generator("cpu").manual_seed(inputs.seed)
        if inputs.two_stage is None:
            video, audio, stage = self._generate(inputs, generator, on_step)
            self._denoising = {"path": "single-stage", "stages": [stage]}
        else:
            video, audio = self._two_stages(inputs, generator, on_step)
        # Both latents, denormalised: video (1, 128, latent frames, h/32, w/32), audio (1, 8, length, mel bins / 4).
        return WithAudio(video, audio if inputs.audio else None)

    def _generate(self, inputs: DenoiseInputs, generator, on_step: StepCallback):
        """One pipeline call from the picture: (video latents, audio latents, the stage's record)."""
        pipe = self.pipeline
        arguments = {**latent_run_arguments(inputs, generator, on_step), **generation_arguments(pipe)}
        fixed = stages.fixed_sigmas(inputs.sigmas) if inputs.sigmas else None
        if fixed is not None:  # a distilled schedule runs as it was distilled: its own steps, no guidance pass
            arguments.update(sigmas=fixed, num_inference_steps=len(fixed), **stages.NO_GUIDANCE)
        with self.transformer_cache_for_run(), stages.unshifted_scheduler(pipe, fixed is not None):
            video, audio = pipe(
                image=conditioning_image(inputs.image, CONDITIONING_CRF),
                image_crf=0,  # re-compressed above with our ffmpeg (the pipeline would need PyAV)
                prompt=inputs.prompt,
                negative_prompt=inputs.negative_prompt or None,
                frame_rate=float(inputs.fps),
                max_sequence_length=TEXT_TOKENS,
                return_dict=False,
                **arguments,
            )
            used = stages.used_sigmas(pipe.scheduler)
        return video, audio, stages.stage_record("generate", inputs, arguments, used if fixed else None,
                                                 schedule=inputs.sigmas)

    def _two_stages(self, inputs: DenoiseInputs, generator, on_step: StepCallback):
        """Half the sides, ×2 latent upsampler, refinement at full size (module docstring)."""
        refine_steps = len(stages.refine_sigmas())
        total = inputs.steps + refine_steps
        half = stages.first_stage_inputs(inputs)
        video, audio, first = self._generate(half, generator, stages.offset_steps(on_step, 0, total))
        upsampled, lifted = self._upsample(video, inputs)
        video, audio, refine = self._refine(inputs, upsampled, audio, generator,
                                            stages.offset_steps(on_step, inputs.steps, total))
        self._denoising = {"path": "two-stage", "stages": [first, lifted, refine]}
        return video, audio

    def _upsample(self, video_latents, inputs: DenoiseInputs):
        folder = inputs.two_stage.upsampler
        model, findings = self._upsampler_from(folder)
        plan = self._loaded_plan
        device = self.pipeline._execution_device
        if model.dtype != torch_dtype(plan.dtype):  # the plan's dtype, after a safer-precision retry too
            model.to(dtype=torch_dtype(plan.dtype))
        model.to(device)
        try:
            upsampled = upsample(model, video_latents, device)
        finally:
            if plan.cpu_offload != "none":  # offloaded plans keep the GPU for the model running: back to the CPU
                model.to("cpu")
        record = {"stage": "upsample", "upsampler": inputs.two_stage.upsampler_source,
                  "from": [inputs.width // 2, inputs.height // 2], "to": [inputs.width, inputs.height],
                  "weight_findings": [finding.to_dict() for finding in findings]}
        return upsampled, record

    def _upsampler_from(self, folder: Path):
        """The upsampler in ``folder``, loaded once and kept beside the pipeline (another folder replaces it)."""
        if self._upsampler is None or self._upsampler[0] != folder:
            model, findings = load_upsampler(folder, self._loaded_plan.dtype, self.pipeline.vae.config.latent_channels)
            for finding in findings:
                log.warning("latent upsampler %s: %s", folder, finding.message)
            self._upsampler = (folder, model.eval(), findings)
        return self._upsampler[1], self._upsampler[2]

    def _refine(self, inputs: DenoiseInputs, upsampled, audio_latents, generator, on_step: StepCallback):
        """The second stage as diffusers' docs run it: the upsampled latents (and the first stage's sound) re-noised
        to the first refinement sigma, then the fixed refinement schedule as is, without guidance."""
        pipe = self.pipeline
        sigmas = stages.refine_sigmas()
        refined = replace(inputs, steps=len(sigmas))
        arguments = {**latent_run_arguments(refined, generator, on_step), **generation_arguments(pipe),
                     **stages.NO_GUIDANCE, "sigmas": sigmas}
        with stages.unshifted_scheduler(pipe), self._refine_lora(inputs.two_stage.refine_lora) as lora:
            video, audio = pipe(
                latents=upsampled,
                audio_latents=audio_latents,
                image_crf=0,
                prompt=inputs.prompt,
                negative_prompt=inputs.negative_prompt or None,
                frame_rate=float(inputs.fps),
                max_sequence_length=TEXT_TOKENS,
                noise_scale=sigmas[0],
                return_dict=False,
                **arguments,
            )
            used = stages.used_sigmas(pipe.scheduler)
        return video, audio, {**stages.stage_record("refine", refined, arguments, used, schedule="stage 2 distilled"),
                              "lora": lora}

    @contextlib.contextmanager
    def _refine_lora(self, lora) -> Iterator[dict | None]:
        """The refinement's LoRA beside the job's, for the refinement alone: (its record) or None without one."""
        if lora is None:
            yield None
            return
        records, _ = super().use_loras(self._job_loras + (lora,))
        try:
            yield records[-1]
        finally:
            super().use_loras(self._job_loras)

    def unload(self) -> None:
        self._upsampler = None
        super().unload()

    makes_previews = True

    def preview_latents(self, latents, inputs: DenoiseInputs):
        """The pipeline steps packed video tokens (1, frames·h·w, channels): unpacked as its own ``_unpack_latents``
        does, with the latent shape it derives from the request."""
        pipe = self.pipeline
        frames = (inputs.frames - 1) // pipe.vae_temporal_compression_ratio + 1
        height = inputs.height // pipe.vae_spatial_compression_ratio
        width = inputs.width // pipe.vae_spatial_compression_ratio
        return pipe._unpack_latents(latents, frames, height, width, pipe.transformer_spatial_patch_size,
                                    pipe.transformer_temporal_patch_size)[0]

    def encode_preview_clip(self, video):
        """Normalised per channel as the pipeline normalises the picture's latents (``prepare_latents``)."""
        pipe = self.pipeline
        return pipe._normalize_latents(self._encode_for_preview(video), pipe.vae.latents_mean,
                                       pipe.vae.latents_std)[0]

    def decode(self, latents: WithAudio, plan: ExecutionPlan, *, dtype: str | None = None) -> WithAudio:
        """The video VAE, then (unless audio is off) the audio VAE and the vocoder. ``plan.decode_chunk_size`` does
        not apply (the causal VAE takes the whole clip); tiling and slicing do."""
        import torch

        pipe = self.pipeline
        device = pipe._execution_device
        with self._vae_for_decode(plan, dtype) as (vae, target), torch.no_grad():
            video_latents = latents.video.to(device=device, dtype=target)
            # The pipeline's default decode_timestep is 0 with no added noise: the latents are decoded as they are.
            timestep = torch.zeros(1, device=device, dtype=target) if vae.config.timestep_conditioning else None
            video = vae.decode(video_latents, timestep, return_dict=False)[0]
        if latents.audio is None:
            return WithAudio(video, None)
        with _cast(pipe.audio_vae, dtype) as audio_vae, _cast(pipe.vocoder, dtype) as vocoder, torch.no_grad():
            mel = audio_vae.decode(latents.audio.to(device=device, dtype=audio_vae.dtype), return_dict=False)[0]
            waveform = vocoder(mel.to(vocoder.dtype))
        return WithAudio(video, waveform, int(vocoder.config.output_sampling_rate))


def generation_arguments(pipe) -> dict:
    """What differs between LTX-2.0 and LTX-2.3 checkpoints (the pipeline's defaults are LTX-2.3's). LTX-2.3's text
    connectors project per modality; LTX-2.0's do not."""
    layers = pipe.transformer.config.num_layers
    if pipe.connectors.config.per_modality_projections:
        return {"use_cross_timestep": True, "spatio_temporal_guidance_blocks": [min(STG_BLOCK_LTX23, layers - 1)]}
    return {"use_cross_timestep": False, "spatio_temporal_guidance_blocks": [min(STG_BLOCK_LTX20, layers - 1)]}


@contextlib.contextmanager
def _cast(model, dtype: str | None) -> Iterator[object]:
    """``model`` in ``dtype`` for a decode-only retry in a safer precision; put back afterwards."""
    original = model.dtype
    target = torch_dtype(dtype) if dtype else original
    try:
        if target != original:
            model.to(dtype=target)
        yield model
    finally:
        if target != original:
            model.to(dtype=original)


def conditioning_image(image: Image.Image, crf: int) -> Image.Image:
    """``image`` after one H.264 encode at ``crf`` and back, as the pipeline's ``apply_image_conditioning_crf``
    does with PyAV (libx264, preset veryfast, yuv420p): LTX-2 was trained on compressed first frames. Same codec and
    settings through imageio-ffmpeg's ffmpeg, so not byte-identical to PyAV's colour conversion."""
    import imageio_ffmpeg
    import numpy as np

    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = np.ascontiguousarray(rgb[:height, :width])
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    encode = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-i", "-",
              "-frames:v", "1", "-c:v", "libx264", "-crf", str(crf), "-preset", "veryfast", "-pix_fmt", "yuv420p",
              "-f", "h264", "-"]
    decode = [ffmpeg, "-v", "error", "-f", "h264", "-i", "-", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
              "rgb24", "-"]
    try:
        stream = subprocess.run(encode, input=rgb.tobytes(), capture_output=True, timeout=_FFMPEG_TIMEOUT_S,
                                check=True).stdout
        raw = subprocess.run(decode, input=stream, capture_output=True, timeout=_FFMPEG_TIMEOUT_S,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise VideoEncodeError(
            f"ffmpeg could not re-compress the picture for LTX-2's conditioning ({exc}). Reinstall it with "
            "`pip install --force-reinstall imageio-ffmpeg`, or set IMAGEIO_FFMPEG_EXE to a working ffmpeg."
        ) from exc
    if len(raw) != height * width * 3:
        raise VideoEncodeError(f"ffmpeg returned {len(raw)} bytes for a {width}×{height} picture; expected "
                               f"{height * width * 3}.")
    return Image.fromarray(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
