"""What the three diffusion-transformer backends (CogVideoX, Wan, EasyAnimate) share through the engine, checked once
for each of their tiny models: the per-step callback stops the pipeline at once on cancel."""
from __future__ import annotations

import pytest

from i2v.engine.engine import Engine
from i2v.errors import JobCancelled
from i2v.gpu.hardware import FixedGpuInfo
from i2v.engine.progress import CancelToken
from i2v.engine.request import GenerationRequest


@pytest.mark.parametrize("model", ["tiny-cogvideox", "tiny-wan", "tiny-easyanimate"])
def test_cancel_during_denoising_stops_the_pipeline_and_writes_nothing(photo_path, tmp_path, model):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    token = CancelToken()
    steps = []

    def cancel_after_first_step(event):
        if event.stage == "denoise":
            steps.append(event.step)
            token.cancel()

    request = GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left", model=model,
                                frames=9, steps=3, seeds=(7,))
    with pytest.raises(JobCancelled):
        engine.generate(request, on_progress=cancel_after_first_step, cancel=token)
    assert steps == [1]  # the callback's exception left the pipeline's loop at once
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
