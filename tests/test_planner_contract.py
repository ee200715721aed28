"""Every planner the engine can run with keeps the whole ``Planner`` contract: a real out-of-memory error (torch's
own error type, injected into the tiny model's UNet or VAE decoder) ends in the clear out-of-memory message, never
in a TypeError or AttributeError from a method the planner lacks, and the engine keeps serving afterwards."""
from __future__ import annotations

import pytest

from i2v.bench.speedups import _FixedDecodeChunk
from i2v.engine.engine import Engine
from i2v.errors import GpuOutOfMemoryError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import BasicPlanner, Planner
from i2v.planning.planner import MemoryPlanner
from test_oom_recovery import make_request, out_of_memory

PLANNERS = {
    "memory planner": lambda gpus: MemoryPlanner(gpus),
    "basic planner": lambda gpus: BasicPlanner(gpus),
    "bench's fixed decode chunk": lambda gpus: _FixedDecodeChunk(MemoryPlanner(gpus), 2),
}
CONTRACT = [name for name in dir(Planner) if not name.startswith("_")]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """One engine per planner, the tiny model loaded once each (the planners differ, the model does not)."""
    made = {}
    for name, build in PLANNERS.items():
        gpus = FixedGpuInfo.none()
        made[name] = Engine(gpu_info=gpus, planner=build(gpus), output_dir=tmp_path_factory.mktemp("out"))
    return made


def test_the_contract_names_every_method_the_run_calls():
    assert set(CONTRACT) == {"plan", "next_down", "smaller_decode"}


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_implements_the_whole_contract(name):
    planner = PLANNERS[name](FixedGpuInfo.none())
    missing = [method for method in CONTRACT if not callable(getattr(planner, method, None))]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", PLANNERS)
@pytest.mark.parametrize("where", ["denoiser", "decoder"])
def test_a_real_oom_under_each_planner_ends_in_the_clear_message_and_the_engine_keeps_serving(
        engines, name, where, photo_path):
    engine = engines[name]
    request = make_request(photo_path, width=64, height=64, frames=8)
    engine.load(request)
    pipeline = engine.backend.pipeline
    module = pipeline.unet if where == "denoiser" else pipeline.vae.decoder
    before = set(engine.output_dir.rglob("*"))
    with out_of_memory(module, times=None), pytest.raises(GpuOutOfMemoryError) as failure:
        engine.generate(request)
    message = str(failure.value)
    assert "ran out of memory" in message
    assert "the app keeps running" in message
    assert set(engine.output_dir.rglob("*")) == before, "a failed job leaves no file"
    assert engine.generate(request).videos[0].path.exists()
