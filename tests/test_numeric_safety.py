"""NaN/Inf never become a black video: injected into real tiny runs, they are caught before any uint8
conversion and retried in a safer precision, or the job fails clearly with no file written. A bad denoiser step
retried in float32, and a VAE bad in every precision, are checked for every family in test_family_behaviour.py."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from i2v.engine.engine import Engine
from i2v.errors import NonFiniteOutputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.engine.numerics import video_to_uint8
from i2v.engine.request import GenerationRequest


def make_request(image: Path, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="leaves falling slowly, camera panning left", model="tiny", width=64,
                  height=64, frames=6, steps=3, seeds=(11,))
    fields.update(changes)
    return GenerationRequest(**fields)


@contextlib.contextmanager
def nan_output(module: torch.nn.Module, *, only_dtype: torch.dtype | None = None, times: int | None = None):
    """Make ``module`` return NaN (only while its weights are ``only_dtype``, at most ``times`` calls): the way
    fp16/bf16 overflow shows up in a real run."""
    calls = {"n": 0}

    def poison(mod, args, output):
        dtype = next(mod.parameters()).dtype
        if only_dtype is not None and dtype != only_dtype:
            return output
        if times is not None and calls["n"] >= times:
            return output
        calls["n"] += 1
        tensor = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        tensor.fill_(float("nan"))
        return output

    handle = module.register_forward_hook(poison)
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture
def bf16_engine(tmp_path, photo_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    engine.load(make_request(photo_path, dtype="bfloat16"))
    return engine


def outputs(engine: Engine) -> list[Path]:
    return sorted(p for p in engine.output_dir.rglob("*") if p.is_file()) if engine.output_dir.exists() else []


def test_nan_uint8_conversion_is_refused():
    video = torch.zeros(1, 3, 2, 8, 8)
    video[0, 0, 1, 3, 3] = float("nan")
    with pytest.raises(NonFiniteOutputError, match="1 NaN/Inf"):
        video_to_uint8(video)
    assert video_to_uint8(torch.zeros(1, 3, 2, 8, 8)).dtype == np.uint8


def test_nan_from_bf16_vae_only_redecodes_in_fp32(bf16_engine, photo_path):
    vae_decoder = bf16_engine.backend.pipeline.vae.decoder
    with nan_output(vae_decoder, only_dtype=torch.bfloat16):
        result = bf16_engine.generate(make_request(photo_path, dtype="bfloat16"))
    record = result.videos[0].record
    assert any(n["code"] == "numerics.decode_retried" for n in record["notices"])
    assert record["plan"]["dtype_used"] == "float32"
    assert bf16_engine.backend.pipeline.vae.dtype == torch.bfloat16


def test_nan_in_every_precision_fails_clearly_and_writes_nothing(bf16_engine, photo_path):
    unet = bf16_engine.backend.pipeline.unet
    with nan_output(unet), pytest.raises(NonFiniteOutputError, match="no video was written"):
        bf16_engine.generate(make_request(photo_path, dtype="bfloat16"))
    assert outputs(bf16_engine) == []
    assert bf16_engine.backend.pipeline.unet.dtype == torch.bfloat16


def test_nan_in_fp32_has_nothing_safer_and_fails_clearly(tmp_path, photo_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    engine.load(make_request(photo_path))
    with nan_output(engine.backend.pipeline.vae.decoder), pytest.raises(NonFiniteOutputError, match="safest"):
        engine.generate(make_request(photo_path))
    assert outputs(engine) == []
    # Still serving afterwards.
    assert engine.generate(make_request(photo_path)).videos[0].path.exists()
