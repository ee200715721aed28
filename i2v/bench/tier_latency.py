"""How long a tier takes from the click to the video, on the running ``app.py`` (part of the latency bench).

Each run goes through the app's own ``/generate`` endpoint with ``gradio_client``, as a script or the page would:
the job is queued, planned, denoised, decoded, encoded and its video handed back. The model is already warm (the
latency bench waits for the app's background load), so a run is what a user waits for after clicking Generate.
Runs are interleaved tier by tier, so a burst of load from elsewhere on a shared machine hits every tier alike.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TIER_PROMPT = "a red ball rolling slowly to the left"
TIER_SEED = 1234
# What "the tiny models are for trying the app" means on a 2-core CPU (issue 18): a quick look in 15 s, the
# everyday tier in 30 s. Judged on the slowest run, like the page-ready target.
TARGET_TIER_S = {"fast-check": 15.0, "balanced": 30.0}


@dataclass
class TierTiming:
    tier: str
    size: str  # what ran, from the job's own parameters: "128×128 × 8 frames × 30 steps"
    seconds: list[float]  # per run: from calling /generate until the video is back

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.seconds))

    @property
    def max_s(self) -> float:
        return max(self.seconds)

    def target_met(self) -> bool | None:
        target = TARGET_TIER_S.get(self.tier)
        return None if target is None else self.max_s <= target


def time_tiers(url: str, tiers: tuple[str, ...], runs: int, scratch: Path) -> list[TierTiming]:
    """``runs`` jobs per tier through ``url``'s ``/generate``, on the app's own model; per-run seconds."""
    from gradio_client import Client, handle_file

    from i2v.bench.pictures import synthetic_image

    image = scratch / "tier_input.png"
    synthetic_image().save(image)
    timings = {tier: TierTiming(tier, "", []) for tier in tiers}
    client = Client(url, verbose=False)
    try:
        for run in range(runs):
            for tier in tiers:
                started = time.perf_counter()
                _video, _files, result = client.predict(handle_file(str(image)), TIER_PROMPT, preset=tier,
                                                        seed=TIER_SEED, api_name="/generate")
                elapsed = time.perf_counter() - started
                timings[tier].seconds.append(round(elapsed, 3))
                timings[tier].size = _size(result["params"])
                log.info("tier %s run %d/%d: %.2f s (%s)", tier, run + 1, runs, elapsed, timings[tier].size)
    finally:
        client.close()
    return list(timings.values())


def _size(params: dict) -> str:
    return f"{params['width']}×{params['height']} × {params['frames']} frames × {params['steps']} steps"


def markdown_rows(model: str, timings: list[TierTiming], verdict) -> list[str]:
    """One row per tier for the latency table (``verdict`` renders met / not met / not measured)."""
    rows = []
    for timing in timings:
        target = TARGET_TIER_S.get(timing.tier)
        runs = ", ".join(f"{s:.1f}" for s in timing.seconds)
        rows.append(
            f"| `{timing.tier}` on `{model}`, click → video through `/generate` ({timing.size}; runs {runs} s), "
            f"median / max; the target holds for the max | {timing.median_s:.1f} s / {timing.max_s:.1f} s | "
            f"{'–' if target is None else f'≤ {target:g} s'} | {verdict(timing.target_met())} |")
    return rows
