"""Regional torch.compile on the transformer families: every repeated block's forward is compiled on the instance
(Wan's ``blocks``, the others' ``transformer_blocks``; Wan 2.2 A14B: both experts), the output stays the same, and
turning compile off puts the eager forwards back. With torch.compile's "eager" backend (Dynamo traces, nothing is
code-generated), so it runs in seconds on a CPU; inductor's kernels are the GPU runbook's to measure."""
from __future__ import annotations

import pytest
import torch

from i2v.backends.cogvideox import tiny as cogvideox_tiny
from i2v.backends.wan import tiny as wan_tiny
from i2v.backends.wan22 import tiny as wan22_tiny
from i2v.speedups import Speedups, apply_speedups, revert_speedups

from conftest import photo_like


def _latents(pipe, **shape):
    torch.manual_seed(0)  # CogVideoX samples the picture's latents from the global generator
    generator = torch.Generator().manual_seed(0)
    text_positions = getattr(pipe.transformer.config, "max_text_seq_length", None)  # CogVideoX's learned ones
    if text_positions:
        shape["max_sequence_length"] = text_positions
    return pipe(image=photo_like(96, 64), prompt="a boat drifting left", num_inference_steps=2,
                generator=generator, output_type="latent", **shape).frames


@pytest.mark.parametrize("build, experts, shape", [
    (wan_tiny.build_tiny_pipeline, ("transformer",), {"height": 64, "width": 96, "num_frames": 5}),
    (lambda: wan22_tiny.build_tiny_a14b_pipeline(), ("transformer", "transformer_2"),
     {"height": 64, "width": 96, "num_frames": 5}),
    (cogvideox_tiny.build_tiny_pipeline, ("transformer",),
     {"width": cogvideox_tiny.TINY_SIZE[0], "height": cogvideox_tiny.TINY_SIZE[1], "num_frames": 9}),
], ids=["wan", "wan22-a14b", "cogvideox"])
def test_every_block_of_every_expert_is_compiled_and_the_output_is_unchanged(build, experts, shape):
    pipe = build()
    pipe.set_progress_bar_config(disable=True)
    plain = _latents(pipe, **shape)

    notes = apply_speedups(pipe, Speedups(compile=True), compile_backend="eager")
    assert len([n for n in notes if "torch.compile" in n]) == len(experts)
    for name in experts:
        blocks = getattr(getattr(pipe, name), "blocks", None) or getattr(pipe, name).transformer_blocks
        assert all("forward" in block.__dict__ for block in blocks)  # compiled on the instance
    torch.testing.assert_close(_latents(pipe, **shape), plain, atol=1e-5, rtol=1e-5)

    assert revert_speedups(pipe)
    for name in experts:
        blocks = getattr(getattr(pipe, name), "blocks", None) or getattr(pipe, name).transformer_blocks
        assert not any("forward" in block.__dict__ for block in blocks)
    assert torch.equal(_latents(pipe, **shape), plain)
