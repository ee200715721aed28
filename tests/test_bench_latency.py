"""The off-GPU latency bench: the real ``app.py`` started as a subprocess, timed to page-ready, ``/gpu_status``
polled; figures sane, no process left behind, the "Off the GPU" section and JSON keys written.

The app is started once for the module (1 start, 2 s of polling, one job per tier: about 20 s on tiny); the CLI
tests reuse that result so they check the wiring without starting the app again. No figure is compared with its
target here: timings belong in docs/BENCHMARKS.md, not in assertions.
"""
from __future__ import annotations

import json
import math
import os

import pytest

from i2v.bench import latency as bench_latency
from i2v.bench.latency import SECTION_TITLE, LatencyResult, run_latency_bench, splice_section
from i2v.cli import main

EXISTING_TABLE = "| fast-check | 128×128 × 8 × 30 |"


@pytest.fixture(scope="module")
def measured() -> LatencyResult:
    return run_latency_bench(model="tiny", starts=1, poll_seconds=2.0, tier_runs=1)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_latency_figures_are_sane_and_no_app_is_left(measured):
    assert len(measured.page_ready_s) == len(measured.healthz_ready_s) == 1
    page = measured.page_ready_s[0]
    assert 0 < page < 120 and math.isfinite(page)
    assert 0 < measured.healthz_ready_s[0] <= page + 0.5  # both polled in one loop, /healthz first
    status = measured.status_ms
    assert status["max"] >= status["p99"] >= status["p95"] >= status["p50"] > 0
    assert measured.errors == 0
    # 10 polls/s for 2 s on a fixed schedule: about 20 requests, fewer only if the machine stalls badly.
    assert 10 <= measured.requests <= 24
    assert measured.model_warm_s is not None and measured.model_warm_s >= page
    assert measured.app_pids and all(gone(pid) for pid in measured.app_pids)


def test_each_tier_is_timed_click_to_video_at_tinys_own_size(measured):
    from i2v.engine.presets import get_preset

    assert [timing.tier for timing in measured.tiers] == ["fast-check", "balanced"]
    for timing in measured.tiers:
        preset = get_preset(timing.tier, preset_key="tiny")
        assert len(timing.seconds) == 1 and all(0 < s < 600 for s in timing.seconds)
        # The job ran the tier as tiny defines it: its frames and steps, at the toy size.
        assert timing.size.endswith(f" × {preset.frames} frames × {preset.steps} steps")
        width, height = (int(side) for side in timing.size.split(" × ")[0].split("×"))
        assert width * height <= 1.15 * preset.resolution ** 2


def test_latency_only_splices_its_section_and_keeps_the_preset_table(measured, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_latency, "run_latency_bench", lambda **kwargs: measured)
    table, figures = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    table.write_text(f"# Benchmarks\n\n{EXISTING_TABLE} … |\n", encoding="utf-8")
    for _ in range(2):  # the second run replaces the section instead of adding another
        assert main(["bench", "--latency-only", "--poll-seconds", "2", "--starts", "1", "--markdown", str(table),
                     "--json", str(figures), "--note", "taken on a shared 2-core machine"]) == 0
    text = table.read_text(encoding="utf-8")
    assert EXISTING_TABLE in text and text.count(SECTION_TITLE) == 1
    assert "| page ready" in text and "`/gpu_status` p99 at 10 polls/s" in text
    assert "not run (`--latency-only`)" in text and "shared 2-core machine" in text
    assert "| `fast-check` on `tiny`, click → video" in text and "| ≤ 15 s |" in text
    assert "| `balanced` on `tiny`, click → video" in text and "| ≤ 30 s |" in text
    assert text in capsys.readouterr().out
    data = json.loads(figures.read_text())
    assert data["rows"] == []
    latency = data["latency"]
    assert {"page_ready_median_s", "page_ready_max_s", "healthz_ready_median_s", "status_ms", "errors",
            "targets_met"} <= latency.keys()
    assert "app_pids" not in latency
    assert latency["targets_met"]["engine_overhead_pct"] is None
    assert [tier["tier"] for tier in latency["tiers"]] == ["fast-check", "balanced"]
    assert {"size", "seconds", "median_s", "max_s"} <= latency["tiers"][0].keys()
    assert isinstance(latency["targets_met"]["fast-check_s"], bool)


def test_latency_with_presets_judges_the_engine_overhead(measured, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_latency, "run_latency_bench", lambda **kwargs: measured)
    table, figures = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    assert main(["bench", "--model", "tiny", "--presets", "fast-check", "--steps", "2", "--repeats", "1",
                 "--latency", "--markdown", str(table), "--json", str(figures),
                 "--output-dir", str(tmp_path / "videos")]) == 0
    text = table.read_text(encoding="utf-8")
    assert "| fast-check | 128×128 × 8 × 2 |" in text and text.index("| fast-check") < text.index(SECTION_TITLE)
    data = json.loads(figures.read_text())
    overhead = data["rows"][0]["engine_overhead_pct"]
    assert data["latency"]["engine_overhead_worst_pct"] == overhead
    assert f"{overhead:+.1f} % (worst preset, table above)" in text
    assert isinstance(data["latency"]["targets_met"]["engine_overhead_pct"], bool)


def test_splice_section_appends_or_replaces_up_to_the_next_section():
    old = f"# B\n\ntable\n\n{SECTION_TITLE}\n\nold figures\n\n## Later\n\nkept\n"
    new = splice_section(old, f"{SECTION_TITLE}\n\nnew figures\n")
    assert "old figures" not in new and "new figures" in new and new.endswith("## Later\n\nkept\n")
    assert splice_section("# B\n", "S\n") == "# B\n\nS\n"


@pytest.mark.parametrize("flags", [["--poll-seconds", "0"], ["--starts", "0"], ["--tier-runs", "-1"]])
def test_latency_rejects_bad_settings(flags, capsys):
    assert main(["bench", "--latency-only", *flags]) == 2
    assert "--poll-seconds" in capsys.readouterr().err
