"""LTX-2's two-stage path (the high-quality tier) and its distilled-schedule turbo tier, on ``tiny-ltx2`` through the
engine as a user runs them: the video has the size and frames asked for and its sound, the record says which path ran
(each stage's size, steps and sigmas), the result equals diffusers' own two-stage recipe, the planner counts the
upsampler and plans the refinement at full size, and a missing upsampler or LoRA is refused with the command that
fetches it, never replaced by a one-stage run."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from i2v.backends.base import DenoiseInputs, TwoStage
from i2v.backends.ltx2 import LTX2_SPEC
from i2v.backends.ltx2.backend import CONDITIONING_CRF, conditioning_image
from i2v.backends.ltx2.config import parameter_counts
from i2v.backends.ltx2.loading import ltx2_module
from i2v.backends.ltx2.spec import DISTILLED_SCHEDULE, DISTILLED_STEPS
from i2v.backends.ltx2.stages import NO_GUIDANCE
from i2v.backends.ltx2.tiny import (TINY_LTX2_NAME, TINY_LTX2_SPEC, TINY_UPSAMPLER_NAME, TinyLTX2Backend,
                                    build_tiny_pipeline, build_tiny_upsampler, tiny_upsampler_folder)
from i2v.backends.ltx2.upsampler import load_upsampler
from i2v.engine.engine import Engine
from i2v.engine.presets import default_presets
from i2v.engine.request import GenerationRequest
from i2v.engine.video import audio_streams, probe_mp4
from i2v.errors import BadInputError, ModelLoadError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.images import fit_to_size
from i2v.planning.plan import ExecutionPlan

from lora_files import diffusers_lora

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
PROMPT = "waves crashing on rocks, camera panning slowly left, the roar of the surf"
QUICK = {"frames": 9, "steps": 2}  # the tiers' sizes, fewer frames and first-stage steps: seconds on a CPU


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path_factory.mktemp("two-stage-outputs"))


def _request(picture: Path, preset: str, model: str = TINY_LTX2_NAME, **changes) -> GenerationRequest:
    return GenerationRequest(image=str(picture), prompt=PROMPT, model=model, preset=preset, seeds=(5,),
                             **{"frames": None, "steps": None, "resolution": None, **changes})


def _generate(engine, request, steps_seen: list | None = None):
    def progress(event):
        if steps_seen is not None and event.stage == "denoise":
            steps_seen.append((event.step, event.total_steps))

    return engine.generate(request, on_progress=progress).videos[0]


# -- the two-stage path, end to end -------------------------------------------------------------------------------
def test_high_quality_runs_two_stages_and_the_video_keeps_its_size_frames_and_sound(engine, shared_photo_path):
    steps_seen = []
    video = _generate(engine, _request(shared_photo_path, "high-quality", **QUICK), steps_seen)
    record = video.record
    probe = probe_mp4(video.path)
    # 96p at the picture's 5:4, sides multiples of 64 so that the first stage's are multiples of 32.
    assert probe["size"] == (128, 64) and probe["frames"] == 9 and record["video"]["frames"] == 9
    streams = audio_streams(video.path)
    assert len(streams) == 1 and streams[0].startswith("aac") and record["audio"]["sample_rate"] == 24000

    denoising = record["denoising"]
    assert denoising["path"] == "two-stage"
    first, lifted, refine = denoising["stages"]
    assert (first["stage"], first["width"], first["height"], first["steps"], first["guidance"]) == (
        "generate", 64, 32, 2, 3.0)
    assert (lifted["stage"], lifted["upsampler"], lifted["from"], lifted["to"]) == (
        "upsample", TINY_UPSAMPLER_NAME, [64, 32], [128, 64])
    assert (refine["stage"], refine["width"], refine["height"], refine["steps"], refine["guidance"]) == (
        "refine", 128, 64, 3, 1.0)
    assert refine["sigmas"] == [0.909375, 0.725, 0.421875]  # diffusers' STAGE_2_DISTILLED_SIGMA_VALUES, as they are
    assert record["params"]["two_stage"] == {"upsampler": TINY_UPSAMPLER_NAME, "refine_lora": None}
    assert "--preset high-quality" in record["reproduce"]
    # Progress runs across both stages: 2 first-stage steps, then 3 refinement steps, out of 5.
    assert steps_seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_one_stage_tiers_say_so_in_the_record(engine, shared_photo_path):
    record = _generate(engine, _request(shared_photo_path, "balanced", **QUICK)).record
    assert record["denoising"]["path"] == "single-stage"
    (stage,) = record["denoising"]["stages"]
    assert (stage["width"], stage["height"], stage["steps"], stage["guidance"]) == (64, 64, 2, 3.0)
    assert record["params"]["two_stage"] is None


def test_the_two_stages_equal_diffusers_documented_recipe(shared_photo_path):
    """Our two stages give the frames and the sound of diffusers' "Two-stages Generation" example, run by hand on the
    same pipeline: stage 1 at half size, LTX2LatentUpsamplePipeline, the scheduler without dynamic shifting, stage 2
    re-noised to the first refinement sigma on STAGE_2_DISTILLED_SIGMA_VALUES without guidance."""
    from diffusers.pipelines.ltx2.utils import STAGE_2_DISTILLED_SIGMA_VALUES
    from PIL import Image

    backend = TinyLTX2Backend()
    backend.load(CPU_FP32)
    image = fit_to_size(Image.open(shared_photo_path).convert("RGB"), 128, 64)
    inputs = DenoiseInputs(image=image, prompt="leaves falling", negative_prompt="", width=128, height=64, frames=9,
                           steps=2, guidance=3.0, fps=24, seed=11,
                           two_stage=TwoStage(tiny_upsampler_folder(), TINY_UPSAMPLER_NAME))
    ours = backend.decode(backend.denoise(inputs, lambda *_: None), CPU_FP32)

    pipe, module = backend.pipeline, ltx2_module()
    generator = torch.Generator("cpu").manual_seed(11)
    common = dict(prompt="leaves falling", frame_rate=24.0, max_sequence_length=1024, use_cross_timestep=False,
                  spatio_temporal_guidance_blocks=[0], return_dict=False, generator=generator, image_crf=0)
    half = conditioning_image(image.resize((64, 32), Image.LANCZOS), CONDITIONING_CRF)
    video_latent, audio_latent = pipe(image=half, width=64, height=32, num_frames=9, num_inference_steps=2,
                                      guidance_scale=3.0, output_type="latent", **common)
    upsampler = module.LTX2LatentUpsamplerModel.from_pretrained(tiny_upsampler_folder())
    upsampled = module.LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler)(
        latents=video_latent, output_type="latent", return_dict=False)[0]
    original = pipe.scheduler
    pipe.scheduler = type(original).from_config(original.config, use_dynamic_shifting=False, shift_terminal=None)
    try:
        video, audio = pipe(latents=upsampled, audio_latents=audio_latent, width=128, height=64, num_frames=9,
                            num_inference_steps=3, noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0],
                            sigmas=STAGE_2_DISTILLED_SIGMA_VALUES, output_type="pt", **NO_GUIDANCE, **common)
    finally:
        pipe.scheduler = original
    assert ours.video.shape == (1, 3, 9, 64, 128)
    assert torch.allclose((ours.video / 2 + 0.5).clamp(0, 1), video.permute(0, 2, 1, 3, 4), atol=1e-6)
    assert torch.equal(ours.audio, audio)


def test_the_refinement_lora_is_active_in_the_second_stage_only(engine, shared_photo_path, tmp_path, monkeypatch):
    """A two-stage tier with a refinement LoRA: the LoRA changes the video, the record names it in the refinement
    stage (not among the job's LoRAs), and the next job runs without it (the same frames as before it)."""
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path))
    base = _generate(engine, _request(shared_photo_path, "balanced", **QUICK)).record
    diffusers_lora(engine._backend.pipeline.transformer, tmp_path / "tiny-distilled.safetensors", seed=9)
    presets = dict(default_presets())
    high = presets["high-quality"]
    presets["high-quality"] = replace(high, per_model={
        **high.per_model, "tiny-ltx2": {**high.per_model["tiny-ltx2"], "refine_lora": "tiny-distilled.safetensors"}})
    with_lora = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out", presets=presets)
    plain = _generate(engine, _request(shared_photo_path, "high-quality", **QUICK)).record
    refined = _generate(with_lora, _request(shared_photo_path, "high-quality", **QUICK)).record

    assert refined["denoising"]["stages"][2]["lora"]["file"] == "tiny-distilled.safetensors"
    assert refined["denoising"]["stages"][2]["lora"]["tensors_applied"] > 0
    assert refined["loras"] == [] and refined["params"]["two_stage"]["refine_lora"] == "tiny-distilled.safetensors"
    assert refined["video"]["frames_sha256"] != plain["video"]["frames_sha256"]
    after = _generate(with_lora, _request(shared_photo_path, "balanced", **QUICK)).record
    assert after["video"]["frames_sha256"] == base["video"]["frames_sha256"]


# -- refusals: never a silent one-stage run -------------------------------------------------------------------------
def test_the_real_models_high_quality_refuses_naming_the_command_for_each_missing_part(engine, shared_photo_path,
                                                                                       tmp_path, monkeypatch):
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path))
    with pytest.raises(BadInputError) as refused:
        engine.prepare(_request(shared_photo_path, "high-quality", model="Lightricks/LTX-2"))
    message = str(refused.value)
    assert "high-quality tier of LTX-2 I2V needs the latent upsampler (latent_upsampler of Lightricks/LTX-2)" in message
    assert "`hf download Lightricks/LTX-2 --include 'latent_upsampler/*'`" in message
    assert f"`hf download Lightricks/LTX-2 ltx-2-19b-distilled-lora-384.safetensors --local-dir {tmp_path}`" in message

    (tmp_path / "ltx-2-19b-distilled-lora-384.safetensors").write_bytes(_any_safetensors())
    with pytest.raises(BadInputError) as refused:  # the LoRA is there now: only the upsampler is asked for
        engine.prepare(_request(shared_photo_path, "high-quality", model="Lightricks/LTX-2"))
    assert "latent_upsampler" in str(refused.value) and "distilled-lora" not in str(refused.value)


def test_a_model_folder_holding_the_upsampler_runs_two_stages_and_one_without_is_told_where_it_goes(
        engine, shared_photo_path, tmp_path, monkeypatch):
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path))
    (tmp_path / "ltx-2-19b-distilled-lora-384.safetensors").write_bytes(_any_safetensors())
    folder = tmp_path / "my-ltx2"
    build_tiny_pipeline().save_pretrained(folder)  # a folder is LTX-2 by its model_index.json
    with pytest.raises(BadInputError, match=rf"or put it in {folder / 'latent_upsampler'}"):
        engine.prepare(_request(shared_photo_path, "high-quality", model=str(folder)))

    shutil.copytree(tiny_upsampler_folder(), folder / "latent_upsampler")
    job = engine.prepare(_request(shared_photo_path, "high-quality", model=str(folder)))
    assert job.two_stage.upsampler == folder / "latent_upsampler"
    assert job.two_stage.refine_lora.name == "ltx-2-19b-distilled-lora-384.safetensors"
    assert job.params.width % 64 == 0 and job.params.height % 64 == 0


@pytest.mark.parametrize("change, message", [
    ({"in_channels": 16}, "takes 16 latent channels but the video VAE makes 8"),
    ({"temporal_upsample": True, "use_rational_resampler": False}, "needs ×2 in space and nothing in time"),
])
def test_an_upsampler_that_cannot_work_here_is_refused_naming_why(tmp_path, change, message):
    shape = {"in_channels": 8, **change}
    model = ltx2_module().LTX2LatentUpsamplerModel(**{**build_tiny_upsampler().config, **shape})
    model.save_pretrained(tmp_path / "up")
    with pytest.raises(ModelLoadError, match=message):
        load_upsampler(tmp_path / "up", "float32", latent_channels=8)


def test_a_folder_that_is_not_an_upsampler_is_refused_by_its_class(tmp_path):
    shutil.copytree(tiny_upsampler_folder(), tmp_path / "up")
    config = json.loads((tmp_path / "up" / "config.json").read_text())
    (tmp_path / "up" / "config.json").write_text(json.dumps({**config, "_class_name": "LTXLatentUpsamplerModel"}))
    with pytest.raises(ModelLoadError, match="is a LTXLatentUpsamplerModel; expected LTX2LatentUpsamplerModel"):
        load_upsampler(tmp_path / "up", "float32", latent_channels=8)


# -- turbo: the distilled schedule ---------------------------------------------------------------------------------
def test_turbo_runs_the_distilled_schedule_with_its_lora_and_refuses_with_the_command_without_it(
        engine, shared_photo_path, tmp_path, monkeypatch):
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path))
    with pytest.raises(BadInputError, match=r"turbo tier of LTX-2 I2V \(tiny, random weights\) needs the "
                                            r"step-distilled LoRA tiny-ltx2-turbo\.safetensors.*put "
                                            r"tiny-ltx2-turbo\.safetensors in the LoRA folder"):
        engine.prepare(_request(shared_photo_path, "turbo"))
    with pytest.raises(BadInputError, match=r"`hf download Lightricks/LTX-2 ltx-2-19b-distilled-lora-384\."
                                            r"safetensors --local-dir "):
        engine.prepare(_request(shared_photo_path, "turbo", model="Lightricks/LTX-2"))

    _generate(engine, _request(shared_photo_path, "balanced", **QUICK))  # the tiny transformer, to write a LoRA for
    diffusers_lora(engine._backend.pipeline.transformer, tmp_path / "tiny-ltx2-turbo.safetensors", seed=4)
    steps_seen = []
    record = _generate(engine, _request(shared_photo_path, "turbo", frames=9), steps_seen).record
    assert (record["params"]["steps"], record["params"]["guidance"], record["params"]["sigmas"]) == (
        8, 1.0, DISTILLED_SCHEDULE)
    (stage,) = record["denoising"]["stages"]
    assert stage["sigmas"] == DISTILLED_SIGMA_VALUES and stage["schedule"] == DISTILLED_SCHEDULE  # as distilled
    assert stage["guidance"] == 1.0 and {total for _, total in steps_seen} == {8}
    assert [lora["file"] for lora in record["loras"]] == ["tiny-ltx2-turbo.safetensors"]
    assert "--preset turbo" in record["reproduce"]

    with pytest.raises(BadInputError, match="fixed distilled schedule of 8 steps, not 4"):
        engine.prepare(_request(shared_photo_path, "turbo", steps=4))
    with pytest.raises(BadInputError, match="without guidance"):
        engine.prepare(_request(shared_photo_path, "turbo", guidance=3.0))


def test_the_distilled_step_count_is_diffusers(engine):
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

    assert LTX2_SPEC.schedule_steps(DISTILLED_SCHEDULE) == DISTILLED_STEPS == len(DISTILLED_SIGMA_VALUES)


# -- memory ----------------------------------------------------------------------------------------------------------
def test_the_plan_counts_the_upsampler_and_plans_the_refinement_at_full_size():
    one, two = LTX2_SPEC, LTX2_SPEC.two_staged()
    assert parameter_counts()["latent_upsampler"] == one.memory.upsampler_params
    assert (two.size_multiple, one.size_multiple) == (64, 32)
    assert two.size_for_tier(768, 1.5)[0] == (960, 640)
    assert one.memory.weights("bfloat16")["upsampler"] == 0
    assert two.memory.weights("bfloat16")["upsampler"] == 2 * one.memory.upsampler_params
    memory = two.memory
    full = memory.tokens(960, 640, 121)
    assert full == 4 * memory.tokens(480, 320, 121)
    estimate = memory.predict_peak(width=960, height=640, frames=121, dtype="bfloat16", cpu_offload="model")
    # The refinement (full size, batch 1) against the first stage (a quarter of the tokens, batch 2 with guidance).
    assert estimate.unet_activation_bytes == memory.denoise_fixed + memory.denoise_per_token * max(full, 2 * full // 4)
    single = one.memory.predict_peak(width=960, height=640, frames=121, dtype="bfloat16", cpu_offload="model")
    assert estimate.weights_denoise_bytes == single.weights_denoise_bytes + 2 * one.memory.upsampler_params


def test_turbo_is_planned_with_one_batch_1_call_per_step():
    turbo = LTX2_SPEC.for_tier(two_stage=False, unguided=True).memory
    assert (turbo.cfg_batch, LTX2_SPEC.memory.cfg_batch) == (1, 2)
    shape = dict(width=640, height=416, frames=121, dtype="bfloat16", cpu_offload="model")
    assert turbo.predict_peak(**shape).unet_activation_bytes < LTX2_SPEC.memory.predict_peak(**shape).unet_activation_bytes


def test_the_tiny_upsamplers_count_equals_the_build():
    assert TINY_LTX2_SPEC.memory.upsampler_params == sum(p.numel() for p in build_tiny_upsampler().parameters())


def _any_safetensors() -> bytes:
    """A small valid safetensors file (what stands in for a downloaded LoRA where only its presence matters)."""
    from safetensors.torch import save

    return save({"transformer.x.lora_A.weight": torch.zeros(1, 1)})
