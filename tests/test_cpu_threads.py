"""A toy model on the CPU runs on one torch thread (i2v/engine/cpu_threads.py says why); nothing else changes."""
from __future__ import annotations

import pytest
import torch

from i2v.engine.cpu_threads import TOY_MODEL_CPU_THREADS, cpu_threads_for
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.gpu.hardware import FixedGpuInfo


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_tiny_job_on_the_cpu_runs_single_threaded_and_restores_the_setting(two_threads, photo_path, tmp_path):
    seen = []
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    request = GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left", model="tiny",
                                resolution=128, frames=4, steps=2, seeds=(1,))
    engine.generate(request, on_progress=lambda event: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {TOY_MODEL_CPU_THREADS}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("random_weights, device", [(False, "cpu"), (True, "cuda:0")])
def test_real_models_and_gpu_jobs_keep_torchs_threads(two_threads, random_weights, device):
    with cpu_threads_for(random_weights, device):
        assert torch.get_num_threads() == 2


def test_the_setting_is_restored_when_the_job_fails(two_threads):
    with pytest.raises(RuntimeError), cpu_threads_for(True, "cpu"):
        assert torch.get_num_threads() == TOY_MODEL_CPU_THREADS
        raise RuntimeError("the job failed")
    assert torch.get_num_threads() == 2
