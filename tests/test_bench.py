"""The benchmark command on tiny (CPU): ours against plain diffusers in one run, table and JSON written."""
from __future__ import annotations

import json

import pytest

from i2v.cli import main


def test_bench_writes_table_and_json_with_ratios_and_psnr(tmp_path, capsys):
    table, figures = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    status = main(["bench", "--model", "tiny", "--presets", "fast-check,balanced", "--steps", "2",
                   "--repeats", "1", "--markdown", str(table), "--json", str(figures), "--output-dir", str(tmp_path / "videos")])
    assert status == 0
    data = json.loads(figures.read_text())
    assert [row["preset"] for row in data["rows"]] == ["fast-check", "balanced"]
    for row in data["rows"]:
        assert row["steps"] == 2 and row["width"] == 128
        assert row["baseline_wall_s"] > 0 and row["ours_core_s"] > 0
        assert row["speedup"] == pytest.approx(row["baseline_wall_s"] / row["ours_core_s"], rel=0.02)
        # Same model, seed and settings: our frames match plain diffusers up to float drift.
        assert row["identical_frames"] or row["psnr_db"] >= 35
    assert data["meta"]["device"] == "CPU" and data["meta"]["versions"]["diffusers"] == "0.42.1"
    # Each optimisation on/off on balanced (the default preset for them), against our run with none.
    speedups = data["meta"]["speedups"]
    assert speedups["preset"] == "balanced"
    variants = {row["variant"]: row for row in speedups["rows"]}
    reference = speedups["rows"][0]
    assert reference["variant"].startswith("reference") and reference["identical_frames"]
    assert reference["speedup"] == 1.0 and reference["settings"]["step_cache_interval"] == 1
    cached = variants["step cache, deep features every 2nd step"]
    # The cache really skipped the deep blocks (2 steps: one full call, one cached), so the frames changed.
    assert (cached["step_cache"]["full_calls"], cached["step_cache"]["cached_calls"]) == (1, 1)
    assert not cached["identical_frames"]
    assert any(note.startswith("unet: classic attention") for note in variants["classic attention (SDPA off)"]["applied"])
    # Attention and memory layout change float rounding only.
    for name in ("classic attention (SDPA off)", "channels-last convolutions"):
        assert variants[name]["identical_frames"] or variants[name]["psnr_db"] >= 35
    # The planner decodes 8 frames per VAE call (its first choice); the variant forces the pipeline's default of 1.
    # The VAE is 2-D, so only memory and time may change, not the pixels.
    one_by_one = variants["decode 1 frame per VAE call (the pipeline's default)"]
    assert (reference["decode_chunk"], one_by_one["decode_chunk"]) == (8, 1)
    assert one_by_one["identical_frames"] or one_by_one["psnr_db"] >= 35
    assert not any("compile" in name for name in variants)  # only with --compile
    assert all(row["peak_nvml_bytes"] is None for row in speedups["rows"])  # no GPU here
    text = table.read_text()
    assert "| fast-check | 128×128 × 8 × 2 |" in text and "| balanced | 128×128 × 16 × 2 |" in text
    assert "No GPU was available" in text and "python -m i2v bench" in text
    assert "## Optimisations on/off" in text and "| step cache, deep features every 3rd step | float32 |" in text
    assert text in capsys.readouterr().out


def test_bench_rejects_unknown_presets(capsys):
    assert main(["bench", "--presets", "ultra"]) == 2
    assert "Unknown preset" in capsys.readouterr().err


def test_bench_refuses_a_speedups_preset_it_does_not_run(capsys):
    assert main(["bench", "--presets", "fast-check", "--speedups-preset", "high-quality"]) == 2
    assert "--speedups-preset 'high-quality' is not among the benched presets (fast-check)" in capsys.readouterr().err
