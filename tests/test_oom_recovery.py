"""A real out-of-memory error during a run is caught, memory freed, and the run retried once on the next plan
down; the process keeps serving. The OOM is injected into the tiny model's UNet (torch's own error type)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from i2v.engine import Engine
from i2v.errors import GpuOutOfMemoryError
from i2v.hardware import FakeGpuInfo
from i2v.request import GenerationRequest


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
    engine = Engine(gpu_info=FakeGpuInfo.none(), output_dir=tmp_path / "out")
    engine.load(make_request(photo_path))
    return engine


def test_oom_once_is_retried_on_the_next_plan_down(engine, photo_path):
    first_plan = engine.prepare(make_request(photo_path)).plan
    with out_of_memory(engine.backend.pipeline.unet, times=1) as calls:
        result = engine.generate(make_request(photo_path))
    assert calls["n"] == 1
    record = result.videos[0].record
    assert result.videos[0].path.exists()
    assert record["plan"]["decode_chunk_size"] < first_plan.decode_chunk_size
    retry = [n for n in record["notices"] if n["code"] == "plan.oom_retry"]
    assert retry and "ran out of memory" in retry[0]["message"]
    assert record["video"]["frames"] == 8


def test_oom_twice_fails_clearly_and_the_engine_keeps_serving(engine, photo_path):
    with out_of_memory(engine.backend.pipeline.unet, times=None), pytest.raises(GpuOutOfMemoryError,
                                                                             match="again on the smaller plan"):
        engine.generate(make_request(photo_path))
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
