"""The memory planner across card sizes and presets (fake GPUs): the chosen plan is the first in the quality
ladder whose prediction fits, never one whose prediction does not; several GPUs; refusals with figures."""
from __future__ import annotations

import json

import pytest

from i2v.backends import spec_for
from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC
from i2v.gpu.hardware import FixedGpuInfo, GpuDevice
from i2v.planning.planner import InsufficientMemoryError, MemoryPlanner
from i2v.engine.presets import default_presets
from i2v.memory.estimate import GIB

CARDS_GIB = (8, 12, 16, 24, 48, 80)
SPEC = I2VGEN_XL_SPEC


def preset_shape(name: str) -> tuple[int, int, int]:
    preset = default_presets()[name]
    (width, height), _ = SPEC.size_for_tier(preset.resolution, 1.0)
    return width, height, preset.frames


@pytest.mark.parametrize("card", CARDS_GIB)
@pytest.mark.parametrize("preset", ["fast-check", "balanced", "high-quality"])
def test_chosen_plan_is_the_best_that_fits_and_never_one_that_does_not(card, preset):
    gpu_info = FixedGpuInfo.single(total_gib=card)
    planner = MemoryPlanner(gpu_info)
    gpu = gpu_info.devices()[0]
    width, height, frames = preset_shape(preset)
    try:
        decision = planner.plan(SPEC, width, height, frames, device=None, dtype="auto")
    except InsufficientMemoryError:
        assert all(not planner.fits(c.estimate, gpu)
                   for c in planner.candidates(SPEC, width, height, frames, gpu, "bfloat16"))
        return
    assert decision.estimate.peak_bytes <= planner.budget(gpu)
    ladder = list(planner.candidates(SPEC, width, height, frames, gpu, "bfloat16"))
    chosen = next(i for i, c in enumerate(ladder)
                  if (c.width, c.height, c.frames, c.plan) == (decision.width, decision.height, decision.frames,
                                                               decision.plan))
    assert all(not planner.fits(c.estimate, gpu) for c in ladder[:chosen])
    if chosen:
        assert any(n.code in ("plan.downgraded", "plan.memory_saving") for n in decision.notices)
    else:
        assert not [n for n in decision.notices if n.code.startswith("plan.")]


def test_big_cards_run_every_preset_as_asked_and_small_ones_are_told_what_changed():
    for preset in ("fast-check", "balanced", "high-quality"):
        width, height, frames = preset_shape(preset)
        decision = MemoryPlanner(FixedGpuInfo.single(total_gib=80)).plan(SPEC, width, height, frames, device=None,
                                                                         dtype="auto")
        assert (decision.width, decision.height, decision.frames) == (width, height, frames)
        assert decision.plan.cpu_offload == "none" and not decision.plan.vae_tiling
    width, height, frames = preset_shape("high-quality")
    small = MemoryPlanner(FixedGpuInfo.single(total_gib=12, name="RTX 3060")).plan(
        SPEC, width, height, frames, device=None, dtype="auto")
    notice = next(n for n in small.notices if n.code == "plan.downgraded")
    assert "768×768 × 24 frames needs ~" in notice.message and "12.0 GiB free on RTX 3060" in notice.message
    assert small.frames < 24 or small.width < 768


def test_quality_neutral_savings_come_before_lower_tiers():
    width, height, frames = preset_shape("balanced")
    decision = MemoryPlanner(FixedGpuInfo.single(total_gib=8)).plan(SPEC, width, height, frames, device=None,
                                                                    dtype="auto")
    assert (decision.width, decision.height, decision.frames) == (512, 512, 16)  # still balanced
    assert decision.plan.cpu_offload == "model"
    assert any(n.code == "plan.memory_saving" and "still 512×512 × 16 frames" in n.message
               for n in decision.notices)


def test_refusal_names_the_figures():
    with pytest.raises(InsufficientMemoryError) as refused:
        MemoryPlanner(FixedGpuInfo.single(total_gib=4, name="Tiny card")).plan(SPEC, 512, 512, 16, device=None,
                                                                              dtype="auto")
    message = str(refused.value)
    assert "GiB" in message and "Tiny card has 4.0 GiB free" in message and "512×512 × 8 frames" in message


def test_used_memory_counts_not_total():
    width, height, frames = preset_shape("high-quality")
    free = MemoryPlanner(FixedGpuInfo.single(total_gib=48, free_gib=48)).plan(SPEC, width, height, frames,
                                                                             device=None, dtype="auto")
    busy = MemoryPlanner(FixedGpuInfo.single(total_gib=48, free_gib=14)).plan(SPEC, width, height, frames,
                                                                             device=None, dtype="auto")
    assert not free.notices and busy.notices


def test_fp16_cards_predict_like_bf16_and_fp32_doubles_the_weights():
    common = dict(width=512, height=512, frames=16, decode_chunk_size=8)
    bf16 = SPEC.memory.predict_peak(dtype="bfloat16", **common)
    fp16 = SPEC.memory.predict_peak(dtype="float16", **common)
    fp32 = SPEC.memory.predict_peak(dtype="float32", **common)
    assert bf16.peak_bytes == fp16.peak_bytes
    assert fp32.weights_denoise_bytes == 2 * bf16.weights_denoise_bytes
    decision = MemoryPlanner(FixedGpuInfo.single(total_gib=24, bf16=False)).plan(SPEC, 512, 512, 16, device=None,
                                                                               dtype="auto")
    assert decision.plan.dtype == "float16"


def test_prediction_grows_with_pixels_frames_and_chunk():
    base = dict(width=512, height=512, frames=16, dtype="bfloat16", decode_chunk_size=4)
    reference = SPEC.memory.predict_peak(**base).peak_bytes
    assert SPEC.memory.predict_peak(**{**base, "frames": 24}).peak_bytes > reference
    assert SPEC.memory.predict_peak(**{**base, "width": 768, "height": 768}).peak_bytes > reference
    assert SPEC.memory.predict_peak(**{**base, "decode_chunk_size": 16}).peak_bytes > reference
    assert SPEC.memory.predict_peak(**base, cpu_offload="model").peak_bytes < reference


def test_several_gpus_job_goes_to_the_one_with_the_best_plan_and_skips_busy_ones():
    small = GpuDevice(0, "small", 12 * GIB, 12 * GIB, (8, 6), True)
    large = GpuDevice(1, "large", 48 * GIB, 40 * GIB, (8, 9), True)
    width, height, frames = preset_shape("high-quality")
    decision = MemoryPlanner(FixedGpuInfo([small, large])).plan(SPEC, width, height, frames, device=None,
                                                               dtype="auto")
    assert decision.plan.device == "cuda:1" and not decision.notices
    busy_large = MemoryPlanner(FixedGpuInfo([small, large]), busy=lambda device: device == "cuda:1")
    decision = busy_large.plan(SPEC, width, height, frames, device=None, dtype="auto")
    assert decision.plan.device == "cuda:0" and decision.notices


def test_each_oom_retry_needs_clearly_less_in_the_phase_that_failed():
    planner = MemoryPlanner(FixedGpuInfo.single(total_gib=80))
    decision = planner.plan(SPEC, 512, 512, 16, device=None, dtype="auto")
    # The denoiser ran out of memory: smaller decode chunks change nothing there, so the first retry keeps the
    # 16 frames and takes the encoders off the GPU; only then fewer frames.
    seen = [decision]
    while (smaller := planner.next_down(SPEC, 512, 512, 16, seen[-1], phase="generate")) is not None:
        freed = seen[-1].estimate.phase_bytes("generate") - smaller.estimate.phase_bytes("generate")
        assert freed >= min(GIB, 0.1 * seen[-1].estimate.phase_bytes("generate"))
        assert "while generating" in smaller.notices[0].message
        seen.append(smaller)
    assert [(d.frames, d.plan.cpu_offload) for d in seen] == [(16, "none"), (16, "model"), (12, "model"),
                                                               (8, "model")]
    # The VAE decode ran out of memory: the retry keeps the frames and decodes with less.
    after_decode = planner.next_down(SPEC, 512, 512, 16, decision, phase="decode")
    assert after_decode.frames == 16 and after_decode.plan.decode_chunk_size < decision.plan.decode_chunk_size
    assert planner.smaller_decode(SPEC, 512, 512, 16, decision).plan == after_decode.plan


def test_cpu_plan_is_trivial_and_says_so():
    decision = MemoryPlanner(FixedGpuInfo.none()).plan(spec_for("tiny"), 64, 64, 8, device=None, dtype="auto")
    assert decision.plan.device == "cpu" and decision.plan.dtype == "float32"
    assert any(n.code == "plan.cpu" for n in decision.notices)


def test_parameter_counts_in_the_spec_match_the_real_architecture():
    from i2v.backends.i2vgen_xl.config import parameter_counts

    counts = parameter_counts()
    memory = SPEC.memory
    assert (memory.unet_params, memory.vae_params, memory.text_encoder_params, memory.image_encoder_params) == (
        counts["unet"], counts["vae"], counts["text_encoder"], counts["image_encoder"])


def test_plan_command_answers_will_it_fit(capsys):
    from i2v.cli import main

    assert main(["plan", "--preset", "balanced", "--gpu-memory", "24", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["planned"] == {"width": 512, "height": 512, "frames": 16}
    assert 5 < report["vram_estimate"]["peak_gib"] < 20
    assert main(["plan", "--preset", "balanced", "--gpu-memory", "4"]) == 2
    assert "does not fit" in capsys.readouterr().err
    # The aspect as the README writes it, and in words how a causal 3-D VAE decodes (no frame chunks).
    assert main(["plan", "--model", "THUDM/CogVideoX-5b-I2V", "--preset", "balanced", "--gpu-memory", "24",
                 "--aspect", "16/9"]) == 0
    out = capsys.readouterr().out
    assert "720×480 × 49 frames, bfloat16, decode the whole clip in tiles, model offload" in out
    with pytest.raises(SystemExit) as stop:  # argparse's own error, one line
        main(["plan", "--preset", "balanced", "--aspect", "16/0"])
    assert stop.value.code == 2
    assert "'16/0' is not an aspect ratio: write 1.5 or 16/9" in capsys.readouterr().err


def test_plan_command_learns_the_expected_duration_from_finished_jobs(photo_path, tmp_path, capsys, monkeypatch):
    from i2v.cli import main

    monkeypatch.setenv("I2V_CACHE_DIR", str(tmp_path / "cache"))  # no speeds learned by other tests
    args = ["plan", "--model", "tiny", "--width", "64", "--height", "64", "--frames", "8", "--steps", "2", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["expected_denoise_seconds"] is None  # nothing learned yet
    assert main(["generate", "--image", str(photo_path), "--prompt", "rain falling", "--model", "tiny", "--width",
                 "64", "--height", "64", "--frames", "8", "--steps", "2", "--output-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(args) == 0
    learned = json.loads(capsys.readouterr().out)["expected_denoise_seconds"]
    assert learned is not None and learned >= 0
