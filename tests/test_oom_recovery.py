"""A real out-of-memory error during a run is caught, memory freed, and the run retried once on a plan that needs
clearly less in the phase that failed (the VAE decode alone when only it failed); the process keeps serving. The
OOM is injected into the tiny model's UNet or VAE decoder (torch's own error type)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from i2v.engine.engine import Engine
from i2v.errors import GpuOutOfMemoryError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.engine.request import GenerationRequest


def make_request(image, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="smoke rising slowly, camera static", model="tiny", width=64, height=64,
                  frames=8, steps=2, seeds=(21,))
    fields.update(changes)
    return GenerationRequest(**fields)


@contextlib.contextmanager
def out_of_memory(module: torch.nn.Module, times: int | None):
    calls = {"n": 0}

    def fail(mod, args):
        if times is None or calls["n"] < times:
            calls["n"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")

    handle = module.register_forward_pre_hook(fail)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture
def engine(tmp_path, photo_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    engine.load(make_request(photo_path))
    return engine


@contextlib.contextmanager
def counting_calls(module: torch.nn.Module):
    calls = {"n": 0}

    def count(mod, args):
        calls["n"] += 1

    handle = module.register_forward_pre_hook(count)
    try:
        yield calls
    finally:
        handle.remove()


def test_oom_in_the_denoiser_retries_the_run_on_a_plan_that_needs_clearly_less_there(engine, photo_path):
    # 256×256 × 16: fewer frames free enough in the denoising phase; smaller decode chunks would free nothing there.
    request = make_request(photo_path, width=256, height=256, frames=16)
    with out_of_memory(engine.backend.pipeline.unet, times=1) as calls:
        result = engine.generate(request)
    assert calls["n"] == 1
    record = result.videos[0].record
    assert result.videos[0].path.exists()
    assert record["video"]["frames"] == 8
    retry = [n for n in record["notices"] if n["code"] == "plan.oom_retry"]
    assert retry and "ran out of memory while generating" in retry[0]["message"]
    assert "16 → 8 frames" in retry[0]["message"]


def test_oom_in_the_denoiser_without_a_plan_that_frees_enough_fails_at_once(engine, photo_path):
    # At 64×64 × 8 nothing smaller needs clearly less in the denoiser: no pointless second run.
    with out_of_memory(engine.backend.pipeline.unet, times=None) as calls, pytest.raises(
            GpuOutOfMemoryError, match="no plan that needs clearly less memory"):
        engine.generate(make_request(photo_path))
    assert calls["n"] == 1


def test_oom_in_the_vae_decode_decodes_the_same_latents_again_with_less_memory(engine, photo_path):
    request = make_request(photo_path, frames=8)
    first_plan = engine.prepare(request).plan
    reference = engine.generate(request, keep_frames=True).videos[0]
    pipeline = engine.backend.pipeline
    with counting_calls(pipeline.unet) as unet_calls, out_of_memory(pipeline.vae.decoder, times=1) as failures:
        result = engine.generate(request, keep_frames=True)
    video = result.videos[0]
    assert failures["n"] == 1
    assert unet_calls["n"] == request.steps  # denoised once (one batched UNet call per step), not twice
    assert video.record["plan"]["decode_chunk_size"] < first_plan.decode_chunk_size
    assert video.record["video"]["frames"] == 8
    assert (video.frames == reference.frames).all()  # the same video: the 2-D VAE decodes each frame alone
    retry = [n for n in video.record["notices"] if n["code"] == "plan.oom_retry"]
    assert retry and "decoded again with less memory" in retry[0]["message"]
    assert "without denoising again" in retry[0]["message"]


def test_oom_twice_in_the_vae_decode_fails_clearly_and_the_engine_keeps_serving(engine, photo_path):
    with out_of_memory(engine.backend.pipeline.vae.decoder, times=None) as failures, pytest.raises(
            GpuOutOfMemoryError, match="while decoding the video .*and again decoding with less memory"):
        engine.generate(make_request(photo_path))
    assert failures["n"] == 2
    assert not engine.output_dir.exists() or not list(engine.output_dir.rglob("*.mp4"))
    assert engine.generate(make_request(photo_path)).videos[0].path.exists()


def test_oom_twice_fails_clearly_and_the_engine_keeps_serving(engine, photo_path):
    request = make_request(photo_path, width=256, height=256, frames=16)
    with out_of_memory(engine.backend.pipeline.unet, times=None), pytest.raises(GpuOutOfMemoryError,
                                                                             match="again on the smaller plan"):
        engine.generate(request)
    assert not engine.output_dir.exists() or not list(engine.output_dir.rglob("*.mp4"))
    assert engine.generate(make_request(photo_path)).videos[0].path.exists()


def test_other_runtime_errors_are_not_mistaken_for_oom(engine, photo_path):
    def broken(mod, args):
        raise RuntimeError("shape mismatch somewhere")

    handle = engine.backend.pipeline.unet.register_forward_pre_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="shape mismatch"):
            engine.generate(make_request(photo_path))
    finally:
        handle.remove()
