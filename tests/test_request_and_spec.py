"""Request validation, seeds, the model spec (frames, sizes, tiers), device/dtype choice and parameter traps."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from conftest import photo_like
from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC
from i2v.backends.i2vgen_xl.tiny import TINY_SPEC
from i2v.errors import BadInputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import BasicPlanner, choose_device, choose_dtype, safer_dtypes
from i2v.engine.request import MAX_SEED, GenerationRequest, seeds_for, validate_request
from i2v.engine.resolve import prepare
from i2v.spec import FrameRule
from i2v.guidance.traps import parameter_traps


def _request(**changes) -> GenerationRequest:
    fields = {"image": "unused.png", "prompt": "a sailboat drifting slowly to the left", "model": "tiny"}
    return GenerationRequest(**{**fields, **changes})


def _codes(findings) -> list[str]:
    return [f.code for f in findings]


# -- validate_request ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        pytest.param({"prompt": ""}, ["prompt", "empty", "describe"], id="empty-prompt"),
        pytest.param({"prompt": "   \n\t "}, ["prompt", "empty", "describe"], id="whitespace-prompt"),
        pytest.param({"prompt": "a boat\x00 sailing"}, ["prompt", "control character"], id="nul-in-prompt"),
        pytest.param({"prompt": "a boat\x1b[31m sailing"}, ["prompt", "control character"], id="escape-in-prompt"),
        pytest.param({"prompt": "a boat\x7f sailing"}, ["prompt", "control character"], id="del-in-prompt"),
        pytest.param({"prompt": "x" * 2001}, ["prompt", "2000"], id="prompt-too-long"),
        pytest.param({"prompt": 42}, ["prompt", "text"], id="prompt-not-text"),
        pytest.param({"prompt": None}, ["prompt", "text"], id="prompt-none"),
        pytest.param({"negative_prompt": "blurry\x00"}, ["negative prompt", "control character"], id="nul-negative"),
        pytest.param({"guidance": float("nan")}, ["guidance"], id="guidance-nan"),
        pytest.param({"guidance": float("inf")}, ["guidance"], id="guidance-inf"),
        pytest.param({"guidance": -1.0}, ["guidance"], id="guidance-negative"),
        pytest.param({"guidance": "9"}, ["guidance"], id="guidance-string"),
        pytest.param({"frames": "16"}, ["frames", "whole number"], id="frames-string"),
        pytest.param({"frames": 16.0}, ["frames", "whole number"], id="frames-float"),
        pytest.param({"frames": 0}, ["frames"], id="frames-zero"),
        pytest.param({"steps": True}, ["steps", "whole number"], id="steps-bool"),
        pytest.param({"fps": 0}, ["fps"], id="fps-zero"),
        pytest.param({"resolution": 10}, ["resolution"], id="resolution-too-small"),
        pytest.param({"seeds": (-1,)}, ["seed", "-1"], id="seed-negative"),
        pytest.param({"seeds": (2**32,)}, ["seed", str(2**32)], id="seed-too-big"),
        pytest.param({"seeds": (1, "2")}, ["seed"], id="seed-string"),
        pytest.param({"width": 512}, ["width", "height"], id="width-without-height"),
        pytest.param({"height": 512}, ["width", "height"], id="height-without-width"),
        pytest.param({"width": 512, "height": 512, "resolution": 512}, ["resolution", "width"], id="size-and-tier"),
        pytest.param({"candidates": 0}, ["candidates"], id="candidates-zero"),
        pytest.param({"candidates": 9}, ["candidates"], id="candidates-nine"),
        pytest.param({"seeds": (1, 2, 3), "candidates": 2}, ["seeds", "candidates"], id="seeds-vs-candidates"),
        pytest.param({"dtype": "fp8"}, ["dtype", "fp8"], id="dtype-fp8"),
        pytest.param({"device": "tpu"}, ["device", "tpu"], id="device-tpu"),
        pytest.param({"output_path": Path("out/video.mov")}, [".mp4", "video.mov"], id="output-not-mp4"),
        pytest.param({"output_path": Path("out/video")}, [".mp4"], id="output-no-suffix"),
    ],
)
def test_validate_request_rejects_with_message_naming_the_field(changes, words):
    with pytest.raises(BadInputError) as info:
        validate_request(_request(**changes))
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="plain"),
        pytest.param({"prompt": "🌊🚣‍♀️🌅"}, id="emoji-only"),
        pytest.param({"prompt": "a boat\tsailing\nslowly\r\nleft"}, id="tab-newline"),
        pytest.param({"prompt": "x" * 2000}, id="prompt-at-limit"),
        pytest.param({"prompt": "Ein Segelboot, das langsam nach links treibt, 帆船"}, id="non-ascii"),
        pytest.param({"seeds": (1, 2, 3), "candidates": 1}, id="three-seeds-one-candidate"),
        pytest.param({"seeds": (1, 2, 3), "candidates": 3}, id="three-seeds-three-candidates"),
        pytest.param({"seeds": (0,), "candidates": 8}, id="seed-zero-eight-candidates"),
        pytest.param({"seeds": (MAX_SEED,)}, id="max-seed"),
        pytest.param({"guidance": 9}, id="integer-guidance"),
        pytest.param({"guidance": 0.0}, id="zero-guidance"),
        pytest.param({"width": 512, "height": 320}, id="explicit-size"),
        pytest.param({"resolution": 768}, id="tier"),
        pytest.param({"dtype": "bfloat16", "device": "cuda:0"}, id="dtype-device"),
        pytest.param({"device": "cpu"}, id="cpu"),
        pytest.param({"output_path": Path("out/Video.MP4")}, id="mp4-upper"),
    ],
)
def test_validate_request_accepts_valid_requests(changes):
    validate_request(_request(**changes))  # must not raise


# -- seeds -----------------------------------------------------------------------------------------------


def test_one_seed_and_several_candidates_count_up():
    assert seeds_for(_request(seeds=(41,), candidates=3), random_seed=7) == (41, 42, 43)


def test_several_seeds_are_used_as_given():
    assert seeds_for(_request(seeds=(5, 99, 3)), random_seed=7) == (5, 99, 3)
    assert seeds_for(_request(seeds=(5, 99, 3), candidates=3), random_seed=7) == (5, 99, 3)


def test_no_seed_uses_the_random_base():
    assert seeds_for(_request(), random_seed=1234) == (1234,)
    assert seeds_for(_request(candidates=3), random_seed=1234) == (1234, 1235, 1236)


def test_seeds_wrap_around_at_2_to_the_32():
    assert seeds_for(_request(seeds=(MAX_SEED - 1,), candidates=4), random_seed=0) == (MAX_SEED - 1, MAX_SEED, 0, 1)


# -- frame rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames, expected", [(16, 17), (15, 17), (18, 17), (21, 21), (17, 17), (13, 13), (14, 13)])
def test_4n_plus_1_rule_snaps_to_nearest_and_ties_go_up(frames, expected):
    rule = FrameRule(4, 1)
    assert rule.nearest(frames, 1, 100) == expected
    assert rule.is_valid(expected)


def test_frame_rule_descriptions():
    assert FrameRule(4, 1).describe() == "4N+1"
    assert FrameRule(8, 1).describe() == "8N+1"
    assert FrameRule(1, 0).describe() == "any count"
    assert FrameRule(8, 0).describe() == "a multiple of 8"


@pytest.mark.parametrize("frames, expected", [(16, 17), (13, 17), (12, 9), (20, 17), (24, 25), (25, 25)])
def test_8n_plus_1_rule(frames, expected):
    assert FrameRule(8, 1).nearest(frames, 1, 100) == expected


def test_frame_rule_respects_the_range():
    # 16 is nearest to 17 but the model allows at most 16 frames here: go down to 13.
    assert FrameRule(4, 1).nearest(16, 2, 16) == 13
    with pytest.raises(BadInputError, match="4N\\+1"):
        FrameRule(4, 1).nearest(3, 2, 4)


def test_snap_frames_on_4n_plus_1_spec_snaps_with_a_notice():
    spec = dataclasses.replace(I2VGEN_XL_SPEC, frame_rule=FrameRule(4, 1))
    frames, notices = spec.snap_frames(16)
    assert frames == 17
    assert _codes(notices) == ["frames.snapped"]
    message = notices[0].message
    assert "16" in message and "17" in message and "4N+1" in message

    frames, notices = spec.snap_frames(21)
    assert (frames, notices) == (21, [])


@pytest.mark.parametrize("frames", [1, 0, -5, 65, 1000])
def test_snap_frames_out_of_range_names_the_valid_range(frames):
    with pytest.raises(BadInputError) as info:
        I2VGEN_XL_SPEC.snap_frames(frames)
    message = str(info.value)
    assert str(frames) in message
    assert f"{I2VGEN_XL_SPEC.min_frames}..{I2VGEN_XL_SPEC.max_frames}" in message


@pytest.mark.parametrize("frames", [2, 3, 7, 16, 23, 64])
def test_i2vgen_xl_accepts_any_frame_count_without_notice(frames):
    assert I2VGEN_XL_SPEC.snap_frames(frames) == (frames, [])


# -- sizes -----------------------------------------------------------------------------------------------


def test_snap_size_rounds_to_the_multiple_with_a_notice():
    size, notices = TINY_SPEC.snap_size(100, 70)
    assert size == (128, 64)
    assert _codes(notices) == ["size.snapped"]
    assert "100×70" in notices[0].message and "128×64" in notices[0].message
    assert str(TINY_SPEC.size_multiple) in notices[0].message


@pytest.mark.parametrize("size", [(64, 64), (512, 320), (1280, 704), (2048, 2048)])
def test_snap_size_leaves_exact_multiples_alone(size):
    assert TINY_SPEC.snap_size(*size) == (size, [])


@pytest.mark.parametrize("size", [(63, 128), (128, 2049), (0, 128), (-64, 128)])
def test_snap_size_out_of_range_names_the_range(size):
    with pytest.raises(BadInputError) as info:
        TINY_SPEC.snap_size(*size)
    assert f"{TINY_SPEC.min_side}..{TINY_SPEC.max_side}" in str(info.value)


def test_snap_size_respects_the_real_models_minimum():
    with pytest.raises(BadInputError, match="256..2048"):
        I2VGEN_XL_SPEC.snap_size(128, 512)


def test_square_tier_is_square():
    assert I2VGEN_XL_SPEC.size_for_tier(512, 1.0) == ((512, 512), [])
    assert I2VGEN_XL_SPEC.size_for_tier(768, 1.0) == ((768, 768), [])


@pytest.mark.parametrize("tier", [512, 768, 1024])
@pytest.mark.parametrize("aspect", [16 / 9, 9 / 16, 4 / 3, 3 / 4, 1280 / 704])
def test_tier_size_keeps_area_and_aspect(tier, aspect):
    (width, height), notices = I2VGEN_XL_SPEC.size_for_tier(tier, aspect)
    assert notices == []
    assert width % 64 == 0 and height % 64 == 0
    assert abs(width * height - tier * tier) <= 0.15 * tier * tier
    assert math.isclose(width / height, aspect, rel_tol=0.1)


def test_512_tier_at_16_9():
    (width, height), notices = I2VGEN_XL_SPEC.size_for_tier(512, 16 / 9)
    assert notices == []
    assert width > height
    assert width % 64 == 0 and height % 64 == 0
    assert abs(width * height - 512 * 512) <= 0.15 * 512 * 512
    assert math.isclose(width / height, 16 / 9, rel_tol=0.05)


@pytest.mark.parametrize("aspect", [4.0, 0.25])
def test_too_wide_or_tall_aspect_is_cropped_with_a_notice(aspect):
    (width, height), notices = I2VGEN_XL_SPEC.size_for_tier(512, aspect)
    assert _codes(notices) == ["size.aspect_cropped"]
    long_side, short_side = max(width, height), min(width, height)
    assert long_side / short_side <= I2VGEN_XL_SPEC.max_aspect
    assert long_side / short_side >= 0.85 * I2VGEN_XL_SPEC.max_aspect  # cropped to the limit, not to square
    assert (width > height) == (aspect > 1)
    assert abs(width * height - 512 * 512) <= 0.15 * 512 * 512


def test_tier_not_offered_lists_the_tiers():
    with pytest.raises(BadInputError) as info:
        I2VGEN_XL_SPEC.size_for_tier(640, 1.0)
    message = str(info.value)
    assert "640" in message
    for tier in I2VGEN_XL_SPEC.resolution_tiers:
        assert f"{tier}p" in message


def test_tiny_offers_small_tiers_but_the_real_model_does_not():
    (width, height), _ = TINY_SPEC.size_for_tier(128, 1.0)
    assert (width, height) == (128, 128)
    with pytest.raises(BadInputError):
        I2VGEN_XL_SPEC.size_for_tier(128, 1.0)


def test_wide_image_is_cropped_end_to_end(tmp_path):
    path = tmp_path / "wide.png"
    photo_like(800, 200).save(path)
    request = GenerationRequest(image=path, prompt="a train crossing a bridge", model="tiny", resolution=256)
    job = prepare(request, BasicPlanner(FixedGpuInfo.none()))
    assert "size.aspect_cropped" in _codes(job.notices)
    assert job.image.size == (job.params.width, job.params.height)
    assert job.params.width > job.params.height
    assert job.params.width / job.params.height <= TINY_SPEC.max_aspect
    assert job.params.resolution == 256


def test_explicit_size_end_to_end_is_snapped(photo_path):
    request = GenerationRequest(image=photo_path, prompt="waves rolling in", model="tiny", width=100, height=70)
    job = prepare(request, BasicPlanner(FixedGpuInfo.none()))
    assert (job.params.width, job.params.height) == (128, 64)
    assert job.params.resolution is None
    assert "size.snapped" in _codes(job.notices)
    assert job.image.size == (128, 64)


# -- device and dtype ------------------------------------------------------------------------------------

BF16_GPU = FixedGpuInfo.single(name="Fake RTX 4090", bf16=True, compute_capability=(8, 9))
OLD_GPU = FixedGpuInfo.single(name="Fake T4", bf16=False, compute_capability=(7, 5))
NO_GPU = FixedGpuInfo.none()


def _plan(gpu_info, *, device=None, dtype="auto", frames=16):
    return BasicPlanner(gpu_info).plan(I2VGEN_XL_SPEC, 512, 512, frames, device=device, dtype=dtype)


def test_bf16_gpu_gets_cuda_and_bfloat16():
    decision = _plan(BF16_GPU)
    assert (decision.plan.device, decision.plan.dtype) == ("cuda:0", "bfloat16")
    assert decision.notices == ()
    assert decision.plan.gpu_name == "Fake RTX 4090"


def test_gpu_without_bf16_falls_back_to_float16_with_a_notice():
    decision = _plan(OLD_GPU)
    assert (decision.plan.device, decision.plan.dtype) == ("cuda:0", "float16")
    assert _codes(decision.notices) == ["dtype.fp16_fallback"]
    assert "Fake T4" in decision.notices[0].message


def test_no_gpu_gets_cpu_and_float32():
    decision = _plan(NO_GPU)
    assert (decision.plan.device, decision.plan.dtype) == ("cpu", "float32")
    assert decision.notices == ()
    assert decision.plan.gpu_name is None


def test_explicit_float32_on_a_gpu_wins():
    decision = _plan(BF16_GPU, dtype="float32")
    assert (decision.plan.device, decision.plan.dtype) == ("cuda:0", "float32")
    assert decision.notices == ()


def test_explicit_bfloat16_on_a_gpu_without_it_is_refused():
    with pytest.raises(BadInputError, match="bfloat16"):
        _plan(OLD_GPU, dtype="bfloat16")


def test_explicit_float16_on_cpu_is_refused():
    with pytest.raises(BadInputError, match="float16"):
        _plan(NO_GPU, dtype="float16")


@pytest.mark.parametrize("gpu_info, device", [(BF16_GPU, "cuda:1"), (NO_GPU, "cuda"), (NO_GPU, "cuda:0")])
def test_missing_cuda_device_is_refused(gpu_info, device):
    with pytest.raises(BadInputError) as info:
        _plan(gpu_info, device=device)
    assert device in str(info.value)
    assert "cpu" in str(info.value)  # says what to use instead


def test_cpu_requested_with_a_gpu_present_runs_on_cpu():
    decision = _plan(BF16_GPU, device="cpu")
    assert (decision.plan.device, decision.plan.dtype) == ("cpu", "float32")
    assert choose_device(BF16_GPU, "cpu") == ("cpu", None)


def test_choose_device_and_dtype_directly():
    device, gpu = choose_device(BF16_GPU, "cuda")
    assert device == "cuda:0" and gpu is not None
    assert choose_dtype(I2VGEN_XL_SPEC, gpu, "auto") == ("bfloat16", [])
    assert choose_dtype(I2VGEN_XL_SPEC, None, "auto") == ("float32", [])


@pytest.mark.parametrize("device", ["cuda:x", "cuda1", "cudax"])
def test_malformed_cuda_device_is_bad_input(photo_path, device):
    request = GenerationRequest(image=photo_path, prompt="waves rolling in", model="tiny", device=device)
    with pytest.raises(BadInputError):
        prepare(request, BasicPlanner(BF16_GPU))


def test_safer_dtypes():
    old_gpu = OLD_GPU.devices()[0]
    new_gpu = BF16_GPU.devices()[0]
    assert safer_dtypes("float16", old_gpu) == ("float32",)
    assert safer_dtypes("float16", new_gpu) == ("bfloat16", "float32")
    assert safer_dtypes("bfloat16", new_gpu) == ("float32",)
    assert safer_dtypes("float32", None) == ()
    assert safer_dtypes("float32", new_gpu) == ()


@pytest.mark.parametrize("frames", [2, 16, 24])
def test_decode_chunk_is_all_frames_on_cpu_and_at_most_4_on_gpu(frames):
    assert _plan(NO_GPU, frames=frames).plan.decode_chunk_size == frames
    assert _plan(BF16_GPU, frames=frames).plan.decode_chunk_size == min(frames, 4)
    assert _plan(BF16_GPU, device="cpu", frames=frames).plan.decode_chunk_size == frames


def test_prepare_uses_the_planner_choice(photo_path):
    request = GenerationRequest(image=photo_path, prompt="waves rolling in", model="tiny")
    job = prepare(request, BasicPlanner(OLD_GPU))
    assert (job.plan.device, job.plan.dtype) == ("cuda:0", "float16")
    assert "dtype.fp16_fallback" in _codes(job.notices)


# -- parameter traps -------------------------------------------------------------------------------------


def _traps(width=512, height=512, frames=16, steps=50, guidance=9.0, negative_prompt=""):
    return _codes(parameter_traps(width=width, height=height, frames=frames, steps=steps, guidance=guidance,
                                  negative_prompt=negative_prompt))


def test_few_steps_with_high_guidance_is_flagged():
    assert "params.few_steps_high_guidance" in _traps(steps=20, guidance=12.0)
    assert "params.few_steps_high_guidance" not in _traps(steps=30, guidance=12.0)
    assert "params.few_steps_high_guidance" not in _traps(steps=20, guidance=9.0)


def test_heavy_run_is_flagged_but_high_quality_preset_is_not():
    assert "params.heavy_run" in _traps(width=1024, height=1024, frames=32, steps=80)
    assert "params.heavy_run" not in _traps(width=768, height=768, frames=24, steps=80)
    assert _traps() == []  # the balanced preset itself raises nothing


def test_negative_prompt_without_guidance_is_flagged():
    assert "params.negative_prompt_unused" in _traps(guidance=1.0, negative_prompt="blurry, distorted")
    assert "params.negative_prompt_unused" not in _traps(guidance=1.0, negative_prompt="  ")
    assert "params.negative_prompt_unused" not in _traps(guidance=9.0, negative_prompt="blurry, distorted")


def test_traps_reach_the_prepared_job(photo_path):
    request = GenerationRequest(image=photo_path, prompt="waves rolling in", model="tiny", steps=20, guidance=12.0)
    job = prepare(request, BasicPlanner(NO_GPU))
    assert "params.few_steps_high_guidance" in _codes(job.warnings)
