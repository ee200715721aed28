"""Speedups on the tiny I2VGen-XL: the step cache skips the deep UNet blocks on the calls it should and nothing else,
leaves no trace after a run, and the attention / memory-format / compile switches keep the output and undo cleanly."""
from __future__ import annotations

import logging
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from i2v.backends.i2vgen_xl.tiny import build_tiny_pipeline
from i2v.errors import BadInputError
from i2v.speedups import (
    Speedups,
    apply_speedups,
    compile_cache_dir,
    revert_speedups,
    step_cache,
    supports_step_cache,
)

log = logging.getLogger(__name__)

STEPS = 5  # with guidance the conditional and unconditional halves go through the UNet as one call: 5 calls a run
SEED = 3


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Toy-sized ops on a small shared CPU: the intra-op thread pool's hand-offs cost far more than the maths (a run
    takes ~0.3 s on one thread, several seconds on two while anything else runs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shared_pipe():
    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def pipe(shared_pipe):
    """The shared pipeline, put back to the plain one after each test whatever the test did to it."""
    yield shared_pipe
    revert_speedups(shared_pipe)


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8), "RGB")


def generate(pipe, picture: Image.Image) -> np.ndarray:
    """Decoded frames (float, 0..1) for a fixed seed. The global RNG is seeded too: the VAE's encoder sample
    ignores the generator."""
    torch.manual_seed(SEED)
    return pipe(
        prompt="a boat drifting", image=picture, height=64, width=64, num_frames=4, num_inference_steps=STEPS,
        guidance_scale=9.0, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np",
    ).frames[0]


@pytest.fixture(scope="module")
def plain_frames(shared_pipe, picture) -> np.ndarray:
    return generate(shared_pipe, picture)


def psnr(reference: np.ndarray, other: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - other.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def module_state(model: torch.nn.Module) -> list[tuple]:
    """Everything a wrapper or hook could leave behind on any submodule: instance attributes and hook tables."""
    return [
        (name, sorted(m.__dict__), {k: v for k, v in m.__dict__.items() if k == "forward"},
         len(m._forward_hooks), len(m._forward_pre_hooks), len(m._forward_hooks_with_kwargs),
         len(m._forward_pre_hooks_with_kwargs))
        for name, m in model.named_modules()
    ]


class ExecutionCounter:
    """Counts real executions of a block by hooking a layer *inside* it: a hook on the block itself would also fire
    on cached calls, where the block's wrapper returns without computing."""

    def __init__(self, unet) -> None:
        self.inner = {
            "down_blocks.0": unet.down_blocks[0].resnets[0],
            "down_blocks.1": unet.down_blocks[1].resnets[0],
            "mid_block": unet.mid_block.resnets[0],
            "up_blocks.-2": unet.up_blocks[-2].resnets[0],
            "up_blocks.-1": unet.up_blocks[-1].resnets[0],
        }
        self.counts = dict.fromkeys(self.inner, 0)
        self.unet_calls = 0
        self._handles = [unet.register_forward_pre_hook(self._count_unet)]
        for key, layer in self.inner.items():
            self._handles.append(layer.register_forward_pre_hook(self._counter(key)))

    def _count_unet(self, _module, _args) -> None:
        self.unet_calls += 1

    def _counter(self, key: str):
        def count(_module, _args) -> None:
            self.counts[key] += 1

        return count

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


# -- settings ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("step_cache_interval", 0), ("step_cache_interval", 11), ("step_cache_interval", -3),
    ("step_cache_interval", 2.5), ("step_cache_interval", "3"), ("step_cache_interval", True),
    ("attention", "flash"), ("attention", "SDPA"), ("channels_last", "yes"), ("compile", 1),
])
def test_bad_values_are_refused_with_the_value_in_the_message(field, value):
    with pytest.raises(BadInputError) as caught:
        Speedups(**{field: value})
    assert repr(value) in str(caught.value)


def test_settings_round_trip_and_describe():
    all_on = Speedups(step_cache_interval=3, channels_last=True, compile=True, attention="sdpa")
    assert all_on.describe() == "step cache every 3 steps, channels-last, torch.compile, SDPA attention"
    assert Speedups().describe() == "SDPA attention"
    assert Speedups(attention="classic").describe() == "classic attention"
    assert Speedups.from_dict(all_on.to_dict()) == all_on
    with pytest.raises(BadInputError, match="step_cache"):
        Speedups.from_dict({"step_cache": 3})


# -- step cache -------------------------------------------------------------------------------------------------
def test_interval_one_is_the_plain_pipeline(pipe, picture, plain_frames):
    before = module_state(pipe.unet)
    with step_cache(pipe.unet, 1) as stats:
        assert module_state(pipe.unet) == before  # nothing installed at all
        frames = generate(pipe, picture)
    assert np.array_equal(frames, plain_frames)
    assert (stats.full_calls, stats.cached_calls) == (0, 0)
    assert module_state(pipe.unet) == before


@pytest.mark.parametrize("interval", [2, 3])
def test_step_cache_runs_the_deep_blocks_only_every_interval_calls(pipe, picture, plain_frames, interval):
    before = module_state(pipe.unet)
    counter = ExecutionCounter(pipe.unet)
    try:
        with step_cache(pipe.unet, interval) as stats:
            frames = generate(pipe, picture)
    finally:
        counter.remove()

    full = math.ceil(STEPS / interval)
    assert counter.unet_calls == STEPS
    assert (stats.full_calls, stats.cached_calls, stats.runs) == (full, STEPS - full, 1)
    # The deep blocks compute on full calls only; the shallow branch on every call.
    assert counter.counts["down_blocks.1"] == counter.counts["mid_block"] == counter.counts["up_blocks.-2"] == full
    assert counter.counts["down_blocks.0"] == counter.counts["up_blocks.-1"] == STEPS

    quality = psnr(plain_frames, frames)
    log.info("step cache every %d: PSNR %.1f dB against the plain run", interval, quality)
    assert np.isfinite(frames).all()
    assert not np.array_equal(frames, plain_frames)  # the cache really was used
    assert quality > 10.0, f"interval {interval}: {quality:.1f} dB"

    assert module_state(pipe.unet) == before
    assert np.array_equal(generate(pipe, picture), plain_frames)  # nothing leaks into the next plain run


def test_a_second_run_in_the_same_context_starts_with_a_full_call(pipe, picture):
    counter = ExecutionCounter(pipe.unet)
    try:
        with step_cache(pipe.unet, 2) as stats:
            first = generate(pipe, picture)
            second = generate(pipe, picture)
    finally:
        counter.remove()
    assert stats.runs == 2
    assert stats.full_calls == 2 * math.ceil(STEPS / 2)
    assert counter.counts["mid_block"] == stats.full_calls
    # Had the second run started from the first run's last deep features, it would not repeat the first exactly.
    assert np.array_equal(first, second)


def test_an_exception_inside_the_context_removes_everything(pipe, picture, plain_frames):
    before = module_state(pipe.unet)
    calls = 0

    def fail_on_third_call(_module, _args):
        nonlocal calls
        calls += 1
        if calls == 3:  # mid-run, while deep features are held
            raise RuntimeError("simulated failure")

    handle = pipe.unet.up_blocks[-1].register_forward_pre_hook(fail_on_third_call)
    try:
        with pytest.raises(RuntimeError, match="simulated failure"):
            with step_cache(pipe.unet, 2):
                generate(pipe, picture)
    finally:
        handle.remove()
    assert module_state(pipe.unet) == before

    with pytest.raises(KeyError):
        with step_cache(pipe.unet, 3):
            raise KeyError("in the with body")
    assert module_state(pipe.unet) == before
    assert np.array_equal(generate(pipe, picture), plain_frames)


def test_a_model_without_unet_blocks_is_refused_clearly():
    transformer_like = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert not supports_step_cache(transformer_like)
    with pytest.raises(BadInputError, match="interval to 1"):
        with step_cache(transformer_like, 2):
            pass
    with step_cache(transformer_like, 1):  # off is fine for any model, so callers need not special-case it
        pass


def test_nested_step_caches_are_refused(pipe):
    assert supports_step_cache(pipe.unet)
    before = module_state(pipe.unet)
    with step_cache(pipe.unet, 2):
        with pytest.raises(RuntimeError, match="already active"):
            with step_cache(pipe.unet, 3):
                pass
        with pytest.raises(RuntimeError, match="between runs"):
            apply_speedups(pipe, Speedups(channels_last=True))
    assert module_state(pipe.unet) == before


# -- resident pipeline settings -----------------------------------------------------------------------------------
def test_classic_attention_matches_sdpa_and_is_reversible(pipe, picture, plain_frames):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    notes = apply_speedups(pipe, Speedups(attention="classic"))
    assert any(n.startswith("unet:") for n in notes) and any(n.startswith("vae:") for n in notes)
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor}
    assert {type(p) for p in pipe.vae.attn_processors.values()} == {AttnProcessor}
    assert apply_speedups(pipe, Speedups(attention="classic")) == []  # idempotent
    np.testing.assert_allclose(generate(pipe, picture), plain_frames, atol=1e-4)

    assert revert_speedups(pipe)
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor2_0}
    assert np.array_equal(generate(pipe, picture), plain_frames)


def test_channels_last_keeps_the_output_and_is_reversible(pipe, picture, plain_frames):
    conv = pipe.unet.conv_in
    weight = conv.weight
    assert apply_speedups(pipe, Speedups(channels_last=True))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert conv.weight is weight  # same Parameter object: the optimiser-free pipeline and compiled code keep it
    assert apply_speedups(pipe, Speedups(channels_last=True)) == []
    np.testing.assert_allclose(generate(pipe, picture), plain_frames, atol=1e-4)

    assert revert_speedups(pipe)
    assert conv.weight.is_contiguous()
    assert revert_speedups(pipe) == []
    assert np.array_equal(generate(pipe, picture), plain_frames)


def test_compiled_blocks_compose_with_the_step_cache(pipe, picture, plain_frames):
    """The wiring, with torch.compile's "eager" backend (Dynamo traces every block, nothing is code-generated), so
    it runs in seconds anywhere; the inductor test below is opt-in."""
    unet = pipe.unet
    with step_cache(unet, 2) as eager_stats:
        eager_cached = generate(pipe, picture)

    notes = apply_speedups(pipe, Speedups(compile=True), compile_backend="eager")
    assert notes and pipe.unet is unet
    assert "forward" in unet.mid_block.__dict__  # the compiled forward sits on the instance
    assert apply_speedups(pipe, Speedups(compile=True), compile_backend="eager") == []
    np.testing.assert_allclose(generate(pipe, picture), plain_frames, atol=1e-5)

    compiled_forward = unet.mid_block.__dict__["forward"]
    with step_cache(unet, 2) as stats:
        assert unet.mid_block.forward.__wrapped__ is compiled_forward  # the cache wraps compiled code from outside
        cached = generate(pipe, picture)
    assert unet.mid_block.__dict__["forward"] is compiled_forward  # put back as it was, still compiled
    assert stats.to_dict() == eager_stats.to_dict()
    np.testing.assert_allclose(cached, eager_cached, atol=1e-5)

    assert revert_speedups(pipe) and "forward" not in unet.mid_block.__dict__
    assert np.array_equal(generate(pipe, picture), plain_frames)


def test_a_model_we_cannot_compile_is_refused_but_reverts_cleanly():
    class TransformerOnlyPipe:
        transformer = torch.nn.Sequential(torch.nn.Linear(2, 2))

    assert revert_speedups(TransformerOnlyPipe()) == []
    with pytest.raises(BadInputError, match="turn compile off"):
        apply_speedups(TransformerOnlyPipe(), Speedups(compile=True), compile_backend="eager")


def _cpp_compiler() -> str | None:
    return next((c for c in (os.environ.get("CXX"), "g++", "c++", "clang++") if c and shutil.which(c)), None)


@pytest.mark.skipif(os.environ.get("I2V_TEST_COMPILE") != "1",
                    reason="inductor compilation takes minutes on a CPU; set I2V_TEST_COMPILE=1 to run it")
def test_inductor_compile_keeps_the_output_and_caches_kernels_in_our_folder(pipe, picture, plain_frames,
                                                                             monkeypatch, tmp_path):
    if _cpp_compiler() is None:
        pytest.skip("torch.compile (inductor) needs a C++ compiler on the CPU: none of g++, c++, clang++ found")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # unset for compile_cache_dir; teardown restores it
    monkeypatch.setenv("I2V_CACHE_DIR", str(tmp_path))
    assert apply_speedups(pipe, Speedups(compile=True))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torchinductor")
    np.testing.assert_allclose(generate(pipe, picture), plain_frames, atol=1e-4)
    with step_cache(pipe.unet, 2) as stats:
        assert np.isfinite(generate(pipe, picture)).all()
    assert stats.cached_calls == STEPS - math.ceil(STEPS / 2)
    assert any((tmp_path / "torchinductor").iterdir())


def test_compile_cache_dir_respects_the_users_choice(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("I2V_CACHE_DIR", str(tmp_path / "ours"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"
    # What importing torch._dynamo writes there by itself is not the user's choice: replaced by our folder.
    for unset in (default_cache_dir(), ""):
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", unset)
        assert compile_cache_dir() == tmp_path / "ours" / "torchinductor"
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "ours" / "torchinductor")
