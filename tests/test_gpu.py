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
    from i2v.gpu.hardware import TorchCudaInfo

    gpus = TorchCudaInfo().devices()
    assert gpus and gpus[0].total_bytes > gpus[0].free_bytes > 0
    assert gpus[0].supports_bf16 == torch.cuda.is_bf16_supported()


def test_memory_this_process_holds_counts_as_free_for_its_next_job():
    """A worker's resident model is not someone else's memory: the next job in the same process reuses it, so the
    planner must not see 1 GiB less free because this process holds 1 GiB."""
    from i2v.gpu.hardware import TorchCudaInfo

    info = TorchCudaInfo()
    before = info.devices()[0].free_bytes
    held = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    raw_free, _ = torch.cuda.mem_get_info(0)
    during = info.devices()[0].free_bytes
    del held
    assert raw_free < before - 2**30 // 2  # the allocation is really there: the driver sees it taken
    assert abs(during - before) < 2**30 // 4  # but this process will hand it to its next job

def test_tiny_on_cuda_uses_preferred_precision_and_records_gpu_memory(photo_path, tmp_path):
    from i2v.engine.engine import Engine
    from i2v.engine.request import GenerationRequest

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
    from i2v.engine.engine import Engine
    from i2v.engine.request import GenerationRequest

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


def test_switching_models_frees_the_previous_one_on_gpu(photo_path, tmp_path):
    """One model resident at a time: after a job on another model only that model's weights are held."""
    from i2v.engine.engine import Engine
    from i2v.engine.request import GenerationRequest

    def held() -> int:
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()

    def weight_bytes(pipe) -> int:
        return sum(p.numel() * p.element_size() for module in pipe.components.values()
                   if isinstance(module, torch.nn.Module) for p in module.parameters())

    engine = Engine(output_dir=tmp_path)
    before = held()
    engine.generate(GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left",
                                      model="tiny-cogvideox", steps=2, seeds=(1,)))
    assert held() - before >= weight_bytes(engine.backend.pipeline)
    engine.generate(GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left", model="tiny",
                                      width=128, height=128, frames=8, steps=2, seeds=(1,)))
    tiny_bytes = weight_bytes(engine.backend.pipeline)
    # Allocator rounding (512-byte blocks per tensor) aside, nothing of CogVideoX is left.
    assert held() - before <= tiny_bytes + 512 * 1024
    engine.unload()
    assert held() - before <= 64 * 1024


def test_full_size_random_model_runs_within_its_predicted_peak(photo_path, tmp_path):
    """The real I2VGen-XL architecture (random weights, built once into the cache: ~10 GB RAM, a minute or two)
    at the balanced preset: the measured torch peak stays under the planner's prediction, which adds allocator
    slack and the CUDA context that torch does not count."""
    from i2v.engine.engine import Engine
    from i2v.engine.request import GenerationRequest

    engine = Engine(output_dir=tmp_path)
    request = GenerationRequest(image=photo_path, prompt="a sailboat drifting slowly to the left",
                                model="i2vgen-xl-random", preset="balanced", steps=3, seeds=(1,))
    job = engine.prepare(request)
    predicted = job.decision.estimate.peak_bytes
    record = engine.generate(request).videos[0].record
    measured = record["memory"]["cuda_peak_allocated_bytes"]
    assert (record["video"]["width"], record["video"]["height"], record["video"]["frames"]) == (
        job.params.width, job.params.height, 16)
    assert 0.5 * predicted <= measured <= predicted, (measured / 2**30, predicted / 2**30)


ALL_TINY = ["tiny", "tiny-cogvideox", "tiny-wan", "tiny-easyanimate", "tiny-wan22-ti2v", "tiny-wan22-a14b", "tiny-ltx2"]
TRANSFORMER_TINY = ALL_TINY[1:]


@pytest.mark.parametrize("model", ALL_TINY)
def test_model_offload_plan_runs_every_family_on_gpu(photo_path, tmp_path, model):
    """The planner's last resort (only the active model on the GPU, tiled decode) works for each backend: the
    decode must send the latents where the VAE's offload hook will put the VAE, not where it waits."""
    import dataclasses

    from i2v.engine.engine import Engine
    from i2v.gpu.hardware import TorchCudaInfo
    from i2v.planning.plan import BasicPlanner
    from i2v.engine.request import GenerationRequest

    class OffloadPlanner(BasicPlanner):
        def plan(self, *args, **kwargs):
            decision = super().plan(*args, **kwargs)
            plan = dataclasses.replace(decision.plan, cpu_offload="model", vae_tiling=True, decode_chunk_size=1)
            return dataclasses.replace(decision, plan=plan)

    engine = Engine(output_dir=tmp_path, planner=OffloadPlanner(TorchCudaInfo()))
    record = engine.generate(GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left",
                                               model=model, preset="fast-check", seeds=(1,))).videos[0].record
    assert record["plan"]["cpu_offload"] == "model" and record["plan"]["device"] == "cuda:0"
    assert record["video"]["frames"] == record["params"]["frames"]


@pytest.mark.parametrize("placement", [{"cpu_offload": "group"}, {"fp8_weights": True},
                                       {"cpu_offload": "group", "fp8_weights": True}])
@pytest.mark.parametrize("model", TRANSFORMER_TINY)
def test_streamed_blocks_and_fp8_weights_run_every_transformer_family_on_gpu(photo_path, tmp_path, model, placement):
    """The memory tiers for 14B-class models (group offload on CUDA streams, fp8 layerwise casting) on the GPU,
    where the streams and fp8 storage are real; the planner's choice is forced so every family runs each tier."""
    import dataclasses

    from i2v.engine.engine import Engine
    from i2v.engine.request import GenerationRequest
    from i2v.gpu.hardware import TorchCudaInfo
    from i2v.planning.plan import BasicPlanner

    class ForcedPlanner(BasicPlanner):
        def plan(self, *args, **kwargs):
            decision = super().plan(*args, **kwargs)
            return dataclasses.replace(decision, plan=dataclasses.replace(decision.plan, vae_tiling=True,
                                                                          **placement))

    engine = Engine(output_dir=tmp_path, planner=ForcedPlanner(TorchCudaInfo()))
    record = engine.generate(GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left",
                                               model=model, preset="fast-check", seeds=(1,))).videos[0].record
    assert record["plan"]["device"] == "cuda:0"
    assert all(record["plan"][key] == value for key, value in placement.items())
    assert record["video"]["frames"] == record["params"]["frames"]


@pytest.mark.parametrize("placement", [{}, {"cpu_offload": "model"}, {"cpu_offload": "group"}, {"fp8_weights": True}])
@pytest.mark.parametrize("model", ["tiny-wan", "tiny-wan22-a14b", "tiny-cogvideox", "tiny-ltx2"])
def test_loras_and_the_step_cache_run_on_every_placement_on_gpu(photo_path, tmp_path, model, placement):
    """LoRA adapters (PEFT) and the TaylorSeer hooks under the placements diffusers moves weights in (model offload
    hooks, group offload streams, fp8 layerwise casting): the combinations a CPU cannot exercise."""
    import dataclasses

    from i2v.engine.engine import Engine
    from i2v.engine.request import GenerationRequest
    from i2v.gpu.hardware import TorchCudaInfo
    from i2v.loras.choice import LoraChoice
    from i2v.planning.plan import BasicPlanner
    from i2v.speedups import Speedups

    from lora_files import diffusers_lora

    class ForcedPlanner(BasicPlanner):
        def plan(self, *args, **kwargs):
            decision = super().plan(*args, **kwargs)
            return dataclasses.replace(decision, plan=dataclasses.replace(decision.plan, vae_tiling=True,
                                                                          **placement))

    engine = Engine(output_dir=tmp_path, planner=ForcedPlanner(TorchCudaInfo()),
                    speedups=Speedups(step_cache_interval=2))
    request = GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left", model=model,
                                frames=9, steps=8, seeds=(1,))
    plain = engine.generate(request).videos[0].record
    lora = diffusers_lora(engine.backend.pipeline.transformer, tmp_path / "lora.safetensors")
    styled = engine.generate(request.with_changes(loras=(LoraChoice(str(lora)),))).videos[0].record
    assert styled["loras"][0]["tensors_applied"] > 0
    assert styled["video"]["frames_sha256"] != plain["video"]["frames_sha256"]
    assert styled["speedups"]["step_cache"]["predicted"] > 0
    assert engine.generate(request).videos[0].record["loras"] == []  # switched off (exact frames: the CPU tests)
