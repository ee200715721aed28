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
    text = table.read_text()
    assert "| fast-check | 128×128 × 8 × 2 |" in text and "| balanced | 128×128 × 16 × 2 |" in text
    assert "No GPU was available" in text and "python -m i2v bench" in text
    assert text in capsys.readouterr().out


def test_bench_rejects_unknown_presets(capsys):
    assert main(["bench", "--presets", "ultra"]) == 2
    assert "Unknown preset" in capsys.readouterr().err
