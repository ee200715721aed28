"""Checks that need a CUDA GPU (run them on a GPU machine: `./start_app.sh test -m gpu`). They skip cleanly
without one, so the default run on a CPU machine reports them as skipped, not passed."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_real_gpu_info_reports_memory_and_bf16():
    from i2v.hardware import TorchCudaInfo

    gpus = TorchCudaInfo().devices()
    assert gpus and gpus[0].total_bytes > gpus[0].free_bytes > 0
    assert gpus[0].supports_bf16 == torch.cuda.is_bf16_supported()


def test_tiny_on_cuda_uses_preferred_precision_and_records_gpu_memory(photo_path, tmp_path):
    from i2v.engine import Engine
    from i2v.request import GenerationRequest

    engine = Engine(output_dir=tmp_path)
    result = engine.generate(GenerationRequest(
        image=photo_path, prompt="waves crashing, camera panning left", model="tiny", width=128, height=128,
        frames=8, steps=4, seeds=(1,),
    ))
    record = result.videos[0].record
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert record["plan"]["device"] == "cuda:0" and record["plan"]["dtype"] == expected
    assert record["plan"]["gpu_name"] == torch.cuda.get_device_name(0)
    assert record["memory"]["cuda_peak_allocated_bytes"] > 0
    again = engine.generate(GenerationRequest(
        image=photo_path, prompt="waves crashing, camera panning left", model="tiny", width=128, height=128,
        frames=8, steps=4, seeds=(1,),
    ))
    assert again.videos[0].record["video"]["frames_sha256"] == record["video"]["frames_sha256"]


def test_fp16_overflow_is_caught_and_retried_on_gpu(photo_path, tmp_path):
    """Real fp16 on the GPU with an overflowing UNet: the NaN guard and retry work with CUDA tensors."""
    from i2v.engine import Engine
    from i2v.request import GenerationRequest

    engine = Engine(output_dir=tmp_path)
    request = GenerationRequest(image=photo_path, prompt="snow falling slowly", model="tiny", width=128,
                                height=128, frames=8, steps=4, seeds=(2,), dtype="float16")
    engine.load(request)
    unet = engine.backend.pipeline.unet

    def overflow_in_fp16(module, args, output):
        if next(module.parameters()).dtype == torch.float16:
            output[0].mul_(torch.tensor(1e30, dtype=torch.float32).half())  # inf in fp16, as real overflow
        return output

    handle = unet.register_forward_hook(overflow_in_fp16)
    try:
        result = engine.generate(request)
    finally:
        handle.remove()
    record = result.videos[0].record
    assert record["plan"]["dtype_used"] in ("bfloat16", "float32")
    assert any(n["code"] == "numerics.run_retried" for n in record["notices"])
