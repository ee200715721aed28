"""The memory tiers that make 14B-class transformers fit 24 GB: streaming the blocks from CPU RAM (diffusers' group
offload) and fp8 weight storage (layerwise casting) are planner rungs with their own VRAM model and a notice that says
what they cost, offered cheapest first, with the CPU RAM checked; and the backends really run them (on the CPU here,
through the same diffusers hooks a GPU uses)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from i2v.backends import spec_for
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.gpu.hardware import FixedGpuInfo
from i2v.memory.estimate import GIB
from i2v.planning.plan import BasicPlanner
from i2v.planning.planner import MemoryPlanner

WAN = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"


def ladder_offloads(model: str, card_gib: float, ram_gib: float | None = None) -> list[tuple[str, bool]]:
    spec = spec_for(model)
    width, height = spec.native_size
    gpus = FixedGpuInfo.single(total_gib=card_gib, ram_gib=ram_gib)
    ladder = MemoryPlanner(gpus).candidates(spec, width, height, spec.default_frames, gpus.devices()[0], "bfloat16")
    return list(dict.fromkeys((c.plan.cpu_offload, c.plan.fp8_weights) for c in ladder))


def test_transformer_rungs_go_from_free_savings_to_streaming_to_fp8():
    assert ladder_offloads(WAN, 24) == [("none", False), ("model", False), ("group", False), ("model", True),
                                        ("group", True)]


def test_the_unet_model_is_never_streamed_or_stored_in_fp8():
    assert {offload for offload, fp8 in ladder_offloads("ali-vilab/i2vgen-xl", 24)} <= {"none", "model"}
    assert not any(fp8 for _, fp8 in ladder_offloads("ali-vilab/i2vgen-xl", 24))


def test_streaming_is_skipped_when_the_cpu_ram_cannot_hold_the_weights():
    streamed = [rung for rung in ladder_offloads(WAN, 24, ram_gib=32) if rung[0] == "group"]
    assert streamed == [("group", True)]  # 43 GiB in bf16 does not fit 32 GiB of RAM; 27 GiB with fp8 blocks does
    assert not [rung for rung in ladder_offloads(WAN, 24, ram_gib=16) if rung[0] == "group"]


def test_streaming_needs_far_less_gpu_memory_and_fp8_halves_the_blocks():
    memory = spec_for(WAN).memory
    shape = dict(width=832, height=480, frames=81, dtype="bfloat16", vae_tiling=True)
    model_offload = memory.predict_peak(cpu_offload="model", **shape)
    streamed = memory.predict_peak(cpu_offload="group", **shape)
    fp8 = memory.predict_peak(cpu_offload="model", fp8_weights=True, **shape)
    assert model_offload.weights_denoise_bytes > 30 * GIB  # the 16.4 B transformer (+ the VAE) whole
    assert streamed.weights_denoise_bytes < 3 * GIB  # outside the blocks + two of its 40 blocks
    assert 15 * GIB < fp8.weights_denoise_bytes < 18 * GIB  # the blocks' 16.2 B weights at one byte each
    assert memory.host_bytes("bfloat16") > 40 * GIB > memory.host_bytes("bfloat16", fp8_weights=True)


def test_wan_14b_480p_fits_24_gb_and_the_notice_names_what_the_rung_costs():
    spec = spec_for(WAN)
    decision = MemoryPlanner(FixedGpuInfo.single(total_gib=24, ram_gib=64)).plan(
        spec, 832, 480, 81, device=None, dtype="auto")
    assert (decision.width, decision.height, decision.frames) == (832, 480, 81)
    assert decision.plan.cpu_offload == "group"
    message = " ".join(n.message for n in decision.notices)
    assert "streaming the models' blocks from CPU RAM (slower" in message and "~43 GiB RAM" in message
    with_little_ram = MemoryPlanner(FixedGpuInfo.single(total_gib=24, ram_gib=32)).plan(
        spec, 832, 480, 81, device=None, dtype="auto")
    assert with_little_ram.plan.fp8_weights
    assert "storing the transformer's weights in fp8 (slight quality cost)" in " ".join(
        n.message for n in with_little_ram.notices)


class _ForcedPlacement:
    """A planner that runs every job with the given placement (offload, fp8), for running the rungs on a CPU."""

    def __init__(self, **placement):
        self._inner = BasicPlanner(FixedGpuInfo.none())
        self._placement = placement

    def plan(self, spec, width, height, frames, *, device, dtype):
        decision = self._inner.plan(spec, width, height, frames, device=device, dtype=dtype)
        return replace(decision, plan=replace(decision.plan, **self._placement))

    def next_down(self, spec, width, height, frames, current, *, phase=None):
        return None

    def smaller_decode(self, spec, width, height, frames, current):
        return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import photo_like

    folder = tmp_path_factory.mktemp("tiers")
    image = folder / "picture.png"
    photo_like(96, 64).save(image)
    request = GenerationRequest(image=image, prompt="waves crashing, camera panning left", model="tiny-wan",
                                frames=5, steps=2, seeds=(3,), dtype="bfloat16")

    def run(**placement):
        engine = Engine(gpu_info=FixedGpuInfo.none(), planner=_ForcedPlacement(**placement),
                        output_dir=folder / "out")
        return engine.generate(request, keep_frames=True).videos[0]

    return {"plain": run(), "group": run(cpu_offload="group"), "fp8": run(fp8_weights=True)}


def test_streaming_the_blocks_gives_the_same_video(runs):
    assert runs["group"].record["plan"]["cpu_offload"] == "group"
    assert (runs["group"].frames == runs["plain"].frames).all()


def test_fp8_weights_run_and_the_record_says_so(runs):
    assert runs["fp8"].record["plan"]["fp8_weights"] is True
    assert runs["fp8"].frames.shape == runs["plain"].frames.shape
    assert (runs["fp8"].frames != runs["plain"].frames).any()  # the weights really were stored in fp8
