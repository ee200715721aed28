"""The bench on the transformer families (CPU, tiny models): every row of the speedups table is there with sane
figures, rows a model cannot run say why, and the model's section is spliced into the Markdown with the rest kept.
No timing is asserted: on a shared 2-core machine only the presence and the sign of the figures are stable."""
from __future__ import annotations

import json
import os

import pytest

from i2v.bench.runner import write_outputs
from i2v.bench.transformer import transformer_sections
from i2v.cli import main

STEPS = "5"  # the step cache predicts from step 4 on (3 warm-up steps): 5 steps give it something to predict
EARLIER = ("# Benchmarks\n\nthe I2VGen-XL preset table\n\n## Optimisations on/off\n\nrows\n\n## Off the GPU\n\n"
           "latency\n\n## Transformer families: tiny-wan22-ti2v\n\nan earlier run\n")


def _bench(model: str, tmp_path, *extra: str) -> tuple[dict, str]:
    table, figures = tmp_path / "BENCHMARKS.md", tmp_path / f"{model}.json"
    if not table.exists():
        table.write_text(EARLIER, encoding="utf-8")
    status = main(["bench", "--model", model, "--steps", STEPS, "--repeats", "1", "--markdown", str(table),
                   "--json", str(figures), "--output-dir", str(tmp_path / "videos"), *extra])
    assert status == 0
    return json.loads(figures.read_text(encoding="utf-8")), table.read_text(encoding="utf-8")


def _ran(row: dict) -> None:
    assert row["not_run"] is None, row
    assert row["core_s"] > 0 and row["step_s"] > 0 and row["first_run_s"] > 0
    assert row["speedup"] > 0 and row["step_ratio"] > 0


def test_tiny_wan_gets_every_row_and_its_section_keeps_the_rest(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path / "my-loras"))
    data, text = _bench("tiny-wan", tmp_path)
    rows = data["rows"]
    assert [row["kind"] for row in rows] == ["reference", "lora", "step_cache", "step_cache", "turbo"]
    for row in rows:
        _ran(row)
    reference, lora, every_2nd, every_3rd, turbo = rows
    assert reference["identical_frames"] and reference["speedup"] == 1.0 and reference["steps"] == 5
    # The LoRA: rank 32 on the attention layers, loaded through the engine like a user's; no PSNR, by design.
    assert lora["row"] == "LoRA rank 32, strength 1 (loaded, unfused)"
    assert lora["no_psnr"].startswith("frames differ by design") and lora["psnr_db"] is None
    assert lora["loras"][0]["tensors_applied"] > 0 and lora["loras"][0]["strength"] == 1.0
    for cached, interval in ((every_2nd, 2), (every_3rd, 3)):
        assert cached["step_cache"]["interval"] == interval and cached["step_cache"]["predicted"] > 0
        assert cached["psnr_db"] is not None and cached["psnr_db"] > 0 and not cached["identical_frames"]
    # Turbo: the same video (size, frames), the tier's 4 steps without a guidance pass and its (synthetic) LoRA.
    assert (turbo["steps"], turbo["guidance"]) == (4, 1.0)
    assert (turbo["width"], turbo["height"], turbo["frames"]) == (reference["width"], reference["height"],
                                                                  reference["frames"])
    assert [lora["file"] for lora in turbo["loras"]] == ["tiny-wan-turbo.safetensors"]
    assert turbo["no_psnr"].startswith("frames differ by design")
    assert os.environ["I2V_LORA_DIR"] == str(tmp_path / "my-loras")  # the bench's own LoRA folder is gone again
    assert data["meta"]["device"] == "CPU" and data["meta"]["preset"] == "balanced"

    assert "## Transformer families: tiny-wan\n" in text
    assert "absolute times are a" in text and "only the ratios mean anything" in text
    assert "| LoRA rank 32, strength 1 (loaded, unfused) | " in text and "per step (target ≤ 3 %" in text
    for kept in ("the I2VGen-XL preset table", "## Optimisations on/off", "## Off the GPU",
                 "## Transformer families: tiny-wan22-ti2v\n\nan earlier run"):
        assert kept in text
    assert "## Transformer families: tiny-wan\n" in capsys.readouterr().out


def test_models_without_turbo_lora_or_cache_hooks_say_so_and_rerunning_replaces_their_section(tmp_path):
    data, _ = _bench("tiny-cogvideox", tmp_path)
    rows = {row["kind"]: row for row in data["rows"]}
    assert "turbo tier is not offered for CogVideoX" in rows["turbo"]["not_run"] and rows["turbo"]["core_s"] is None
    for kind in ("reference", "lora", "step_cache"):
        _ran(rows[kind])

    data, text = _bench("tiny-easyanimate", tmp_path)
    reference, lora, every_2nd, every_3rd, turbo = data["rows"]
    _ran(reference)
    assert "takes no LoRA" in lora["not_run"]
    assert all("no cache hooks" in row["not_run"] for row in (every_2nd, every_3rd))
    assert "not offered" in turbo["not_run"]
    assert "| step cache every 2nd step | – |" in text and "not run: EasyAnimateTransformer3DModel" in text
    assert text.count("## Transformer families: tiny-cogvideox\n") == 1
    assert text.count("## Transformer families: tiny-easyanimate\n") == 1


def test_rewriting_the_i2vgen_xl_table_keeps_the_transformer_sections(tmp_path):
    table = tmp_path / "BENCHMARKS.md"
    table.write_text(EARLIER, encoding="utf-8")
    meta = {"device": "CPU", "dtype": "float32", "model": "tiny", "versions": {}, "warm_up": "none", "repeats": 1}
    text = write_outputs([], meta, "python -m i2v bench", table, None)
    assert transformer_sections(text) == ["## Transformer families: tiny-wan22-ti2v\n\nan earlier run\n"]
    assert table.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("flags, message", [
    (["--latency"], "--latency measures app.py with an I2VGen-XL model"),
    (["--speedups-preset", "none"], "gets the transformer speedups table on one preset"),
])
def test_transformer_bench_refuses_what_it_does_not_run(flags, message, capsys):
    assert main(["bench", "--model", "tiny-wan", *flags]) == 2
    assert message in capsys.readouterr().err
