"""Speedups through the engine and the app: the settings reach the resident model, every record says what ran,
and a change between jobs is applied to the warm model without reloading it."""
from __future__ import annotations

import numpy as np

from i2v.engine.engine import Engine
from i2v.gpu.hardware import FixedGpuInfo
from i2v.engine.request import GenerationRequest
from i2v.speedups import Speedups


def _request(image, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="a red ball rolling slowly to the left", model="tiny", resolution=128,
                  frames=8, steps=6, seeds=(5,))
    fields.update(changes)
    return GenerationRequest(**fields)


def test_step_cache_setting_runs_the_deep_blocks_on_every_nth_step_and_the_record_says_so(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path)
    plain = engine.generate(_request(photo_path), keep_frames=True).videos[0]
    assert plain.record["speedups"] == {**Speedups().to_dict(), "applied": []}

    engine.speedups = Speedups(step_cache_interval=3)
    pipeline = engine.backend.pipeline
    cached = engine.generate(_request(photo_path), keep_frames=True).videos[0]
    assert engine.backend.pipeline is pipeline  # applied to the warm model, not reloaded
    record = cached.record["speedups"]
    assert record["step_cache_interval"] == 3
    assert record["step_cache"] == {"interval": 3, "full_calls": 2, "cached_calls": 4, "runs": 1}  # steps 1 and 4
    assert not np.array_equal(cached.frames, plain.frames)  # the reuse is real: the output moved

    engine.speedups = Speedups()
    again = engine.generate(_request(photo_path), keep_frames=True).videos[0]
    assert np.array_equal(again.frames, plain.frames)  # nothing of the cache is left behind
    assert "step_cache" not in again.record["speedups"]

    # The time estimate the page shows learns cached steps apart from full ones (they are faster).
    import json

    from i2v.engine import step_times
    from i2v.paths import cache_dir

    learned = json.loads((cache_dir() / step_times.FILE_NAME).read_text())
    assert "CPU|I2VGen-XL (tiny, random weights)|float32|cache3" in learned
    assert step_times.speed_variant(Speedups(step_cache_interval=3)) == "cache3"
    assert step_times.speed_variant(Speedups()) == ""
    assert step_times.speed_variant(Speedups(compile=True, attention="classic")) == "compiled+classic"


def test_resident_speedups_are_applied_and_reverted_on_the_warm_model(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path, speedups=Speedups(attention="classic",
                                                                                        channels_last=True))
    first = engine.generate(_request(photo_path), keep_frames=True).videos[0]
    applied = " ".join(first.record["speedups"]["applied"])
    assert "classic attention" in applied and "channels-last" in applied
    unet = engine.backend.pipeline.unet
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor"}

    engine.speedups = Speedups()
    second = engine.generate(_request(photo_path), keep_frames=True).videos[0]
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0"}
    # Same maths in another order: equal to within float rounding, so the video is (nearly) the same.
    difference = np.abs(first.frames.astype(int) - second.frames.astype(int))
    assert difference.max() <= 2
