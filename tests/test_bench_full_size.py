"""``python -m i2v bench --full-size``: the GPU measurement of the real-size transformers. On the CPU the same code
runs at a toy width (the planner still plans the real model for the card), so what the GPU runbook will run is
exercised here: the plan's placement is the one applied, the inputs fit the transformer, every expert takes steps."""
from __future__ import annotations

import pytest
import torch

from i2v.bench.full_size import FULL_SIZE_MODELS, measure_full_size, run_full_size_bench
from i2v.errors import BadInputError

TOY = dict(num_layers=2, num_attention_heads=2, attention_head_dim=32, ffn_dim=128, text_dim=64)
TOY_EXTRA = {"wan": dict(image_dim=32, added_kv_proj_dim=64)}


@pytest.mark.parametrize("model", sorted(FULL_SIZE_MODELS))
def test_each_model_runs_as_planned_for_a_24_gib_card(model):
    row = measure_full_size(model, preset="fast-check", gpu_memory_gib=24, steps=2, device="cpu",
                            config_changes={**TOY, **TOY_EXTRA.get(model, {})})
    assert row.failure is None and row.step_s > 0
    # 14 B models cannot sit whole on a 24 GiB card: the planner streams them, and the bench measures that; the 5 B
    # one fits with the text encoder off the GPU while it denoises.
    assert row.placement.startswith("group offload" if model != "wan22-ti2v" else "model offload")
    assert row.predicted_gib == pytest.approx(row.predicted_weights_gib + row.predicted_activations_gib)
    assert row.predicted_gib < row.predicted_peak_gib <= 24
    assert row.tokens > 10_000 and row.measured_gib is None  # no CUDA here: nothing measured, nothing made up


def test_the_cli_refuses_unknown_models_and_a_machine_without_cuda(tmp_path):
    with pytest.raises(BadInputError, match="wan22-ti2v"):
        run_full_size_bench(["wan-99"], preset="balanced", gpu_memory_gib=24, steps=2, markdown_path=None,
                            json_path=None, command="test")
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="CUDA"):
            run_full_size_bench(["wan"], preset="balanced", gpu_memory_gib=24, steps=2,
                                markdown_path=tmp_path / "b.md", json_path=None, command="test")
        assert not (tmp_path / "b.md").exists()
