"""The step cache of the transformer families (diffusers' TaylorSeer hooks, ``speedups/transformer_cache.py``) on the
tiny models, through the engine: with ``step_cache_interval`` 3 the attention layers compute on fewer calls (the
record counts them), the video stays close to the uncached one, and the next run without the cache gives exactly the
uncached frames (the hooks are gone). EasyAnimate has no cache hooks: its record says the cache did not run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.gpu.hardware import FixedGpuInfo
from i2v.speedups import Speedups


STEPS = 12  # enough steps past the 3 warm-up ones for the interval to show


@pytest.fixture(scope="module")
def picture(shared_photo_path) -> Path:
    return shared_photo_path


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path_factory.mktemp("cache-outputs"))


def _run(engine: Engine, picture: Path, model: str, interval: int):
    engine.speedups = Speedups(step_cache_interval=interval)
    result = engine.generate(GenerationRequest(image=str(picture), prompt="a boat drifting slowly to the left",
                                               model=model, seeds=(3,), frames=9, steps=STEPS), keep_frames=True)
    video = result.videos[0]
    return video.frames.astype(np.float64), video.record


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("model, denoisers", [("tiny-wan", 1), ("tiny-wan22-a14b", 2), ("tiny-cogvideox", 1),
                                              ("tiny-ltx2", 1)])
def test_the_step_cache_skips_attention_work_stays_close_and_leaves_no_hook_behind(engine, picture, model,
                                                                                   denoisers):
    plain, _ = _run(engine, picture, model, 1)
    cached, record = _run(engine, picture, model, 3)
    again, _ = _run(engine, picture, model, 1)

    cache = record["speedups"]["step_cache"]
    assert cache["method"].startswith("TaylorSeer") and cache["interval"] == 3 and cache["denoisers"] == denoisers
    assert 0 < cache["computed"] < cache["attention_calls"] and cache["predicted"] > 0
    assert not np.array_equal(plain, cached)  # it really predicted instead of computing
    assert _psnr(plain, cached) > 30
    assert np.array_equal(plain, again)  # the plain transformer again: every hook removed


def test_a_model_without_cache_hooks_records_that_the_cache_did_not_run(engine, picture):
    _, record = _run(engine, picture, "tiny-easyanimate", 3)
    assert record["speedups"]["step_cache"]["method"] is None
    assert "no cache hooks" in record["speedups"]["step_cache"]["not_run"]
