"""Latency off the GPU, measured against the real ``app.py`` in a subprocess (``python -m i2v bench --latency``).

Two figures, each compared with the performance targets:

* page ready: from ``Popen`` of ``app.py --model tiny`` until ``GET /`` answers 200 with the page HTML (and,
  separately, until ``/healthz`` answers), over several fresh starts; median and max are reported. The first
  start may pay for a cold disk cache, which is why the max is shown next to the median.
* ``/gpu_status`` under polling: once the model is warm (the app loads it in the background after start; polling
  during that load would measure the load, not the endpoint), several keep-alive clients poll on a fixed schedule
  for a fixed time; per-request latency percentiles and the error count are reported.
* the tiers, click to video: after the polling, a few jobs per tier through the app's ``/generate``
  (:mod:`i2v.bench.tier_latency`); on ``tiny`` each has a target (fast-check ≤ 15 s, balanced ≤ 30 s).

Every app started here is stopped here (SIGTERM, then SIGKILL), whatever happens in between.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from i2v.bench.tier_latency import TierTiming, markdown_rows, time_tiers

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PAGE_MARKER = "gpu-panel"  # our own element in the page: a 200 from something else does not count as ready
START_TIMEOUT_S = 120.0
WARM_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
READY_POLL_S = 0.05  # the resolution of the page-ready figure
TARGET_PAGE_READY_S = 4.0
TARGET_STATUS_P99_MS = 10.0
TARGET_ENGINE_OVERHEAD_PCT = 3.0


@dataclass
class LatencyResult:
    model: str
    starts: int
    healthz_ready_s: list[float]  # per start, from Popen
    page_ready_s: list[float]  # per start, from Popen until GET / has the page
    model_warm_s: float | None  # last start: from Popen until the background model load finished
    stop_s: float  # last start: SIGTERM until the process was gone
    pollers: int
    poll_rate_hz: float  # total requests per second over all pollers
    poll_seconds: float
    requests: int
    errors: int
    status_ms: dict[str, float]  # p50, p95, p99, max, mean of the successful requests
    cpu_count: int | None
    tiers: list[TierTiming] = field(default_factory=list)  # last start, after the polling
    app_pids: list[int] = field(default_factory=list)  # for the caller to check none is left; not reported

    @property
    def page_ready_median_s(self) -> float:
        return float(np.median(self.page_ready_s))

    @property
    def page_ready_max_s(self) -> float:
        return max(self.page_ready_s)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("app_pids")
        data["page_ready_median_s"] = round(self.page_ready_median_s, 3)
        data["page_ready_max_s"] = round(self.page_ready_max_s, 3)
        data["healthz_ready_median_s"] = round(float(np.median(self.healthz_ready_s)), 3)
        data["tiers"] = [asdict(t) | {"median_s": round(t.median_s, 3), "max_s": round(t.max_s, 3)}
                         for t in self.tiers]
        return data


# -- the app as a process ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppProcess:
    """``app.py`` on a free port with its own outputs folder; its log (stderr, log files off) goes to a file."""

    def __init__(self, model: str, scratch: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = scratch / f"app_{self.port}.log"
        # The bench's client sends no credentials: with I2V_AUTH every request but /healthz would be a 401.
        # Other I2V_* settings stay (I2V_CACHE_DIR says where the model is); the flags below override the rest.
        env = {k: v for k, v in os.environ.items() if k != "I2V_AUTH"}
        env["PYTHONUNBUFFERED"] = "1"  # the warm-up log line must reach the file when it is written
        with open(self.log_path, "wb") as log_file:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "app.py", "--port", str(self.port), "--model", model,
                 "--output-dir", str(scratch / f"outputs_{self.port}"), "--log-dir", "none"],
                cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def since_start(self) -> float:
        return time.perf_counter() - self.started

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self) -> float:
        """SIGTERM, wait, SIGKILL if it does not go; returns the seconds it took. Always waits, so no zombie."""
        started = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("app.py (pid %d) ignored SIGTERM for %g s; killing it", self.pid, STOP_TIMEOUT_S)
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        return time.perf_counter() - started


def wait_ready(app: AppProcess, client) -> tuple[float, float]:
    """Seconds from start until /healthz answers and until GET / returns the page, polled every 50 ms."""
    import httpx

    healthz_s = page_s = None
    deadline = time.monotonic() + START_TIMEOUT_S
    while page_s is None or healthz_s is None:
        app.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"app.py was not ready within {START_TIMEOUT_S:g} s:\n{app.log_tail()}")
        try:
            if healthz_s is None and client.get(app.url + "/healthz").status_code == 200:
                healthz_s = app.since_start()
            if page_s is None:
                page = client.get(app.url + "/")
                if page.status_code == 200 and PAGE_MARKER in page.text:
                    page_s = app.since_start()
        except httpx.HTTPError:
            pass  # not listening yet: connection refused is the expected answer for the first seconds
        if page_s is None or healthz_s is None:
            time.sleep(READY_POLL_S)
    return healthz_s, page_s


def wait_model_warm(app: AppProcess, model: str) -> float | None:
    """Seconds from start until app.py's background warm-up logged its outcome; None if it never did."""
    markers = (f"model {model} ready", "the model could not be loaded")  # app.py's two warm-up log lines
    deadline = time.monotonic() + WARM_TIMEOUT_S
    while time.monotonic() < deadline:
        app.check_alive()
        text = app.log_path.read_text(encoding="utf-8", errors="replace")
        if any(marker in text for marker in markers):
            return app.since_start()
        time.sleep(0.1)
    log.warning("app.py logged no model warm-up within %g s; polling anyway", WARM_TIMEOUT_S)
    return None


# -- polling /gpu_status -----------------------------------------------------------------------------------------


def _poller(url: str, period: float, offset: float, until: float, latencies: list, errors: list) -> None:
    """One browser tab's worth: its own keep-alive connection, requests on a fixed schedule (not back to back),
    so a slow answer does not lower the load the way a closed loop would."""
    import httpx

    with httpx.Client(timeout=5.0) as client:
        next_at = time.perf_counter() + offset
        while next_at < until:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            started = time.perf_counter()
            try:
                response = client.get(url)
                ok = response.status_code == 200 and "gpu_present" in response.json()
            except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body that is not JSON
                ok = False
                log.debug("gpu_status poll failed: %s", exc)
            elapsed = time.perf_counter() - started
            (latencies if ok else errors).append(elapsed)
            next_at += period


def poll_status(url: str, *, pollers: int, rate_hz: float, seconds: float) -> tuple[list[float], int]:
    """Latencies (s) of the successful polls and the number of failed ones; ``rate_hz`` is the total rate,
    spread evenly over the pollers and staggered so the requests do not arrive in bursts."""
    period = pollers / rate_hz
    until = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[float] = []
    threads = [threading.Thread(target=_poller, args=(url, period, i * period / pollers, until, latencies, errors),
                                name=f"bench-poller-{i}", daemon=True) for i in range(pollers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return latencies, len(errors)


def percentiles_ms(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {key: math.nan for key in ("p50", "p95", "p99", "max", "mean")}
    ms = np.asarray(latencies) * 1000
    figures = {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}
    figures |= {"max": float(ms.max()), "mean": float(ms.mean())}
    return {key: round(value, 3) for key, value in figures.items()}


# -- the whole measurement ---------------------------------------------------------------------------------------


def run_latency_bench(*, model: str = "tiny", starts: int = 3, poll_seconds: float = 10.0, pollers: int = 4,
                      rate_hz: float = 10.0, tiers: tuple[str, ...] = ("fast-check", "balanced"),
                      tier_runs: int = 2) -> LatencyResult:
    """``starts`` fresh starts of app.py timed to page-ready; the last one, once its model is warm, is polled,
    then runs ``tier_runs`` jobs per tier in ``tiers`` (none when 0)."""
    import httpx

    if starts < 1 or poll_seconds <= 0 or pollers < 1 or rate_hz <= 0 or tier_runs < 0:
        raise ValueError("starts and pollers must be ≥ 1, poll_seconds and rate_hz > 0, tier_runs ≥ 0")
    tier_timings: list[TierTiming] = []
    healthz, pages, pids = [], [], []
    with tempfile.TemporaryDirectory(prefix="i2v-bench-latency-") as scratch, \
            httpx.Client(timeout=5.0) as client:
        for index in range(starts):
            app = AppProcess(model, Path(scratch))
            pids.append(app.pid)
            try:
                healthz_s, page_s = wait_ready(app, client)
                healthz.append(round(healthz_s, 3))
                pages.append(round(page_s, 3))
                log.info("start %d/%d: /healthz after %.2f s, page after %.2f s", index + 1, starts, healthz_s,
                         page_s)
                if index == starts - 1:
                    warm_s = wait_model_warm(app, model)
                    latencies, errors = poll_status(app.url + "/gpu_status", pollers=pollers, rate_hz=rate_hz,
                                                    seconds=poll_seconds)
                    # After the polling, not during it: each would slow the other down.
                    if tier_runs:
                        tier_timings = time_tiers(app.url, tiers, tier_runs, Path(scratch))
            finally:
                stop_s = app.stop()
    status = percentiles_ms(latencies)
    log.info("/gpu_status at %g req/s from %d pollers for %g s: %s, %d errors", rate_hz, pollers, poll_seconds,
             status, errors)
    return LatencyResult(
        model=model, starts=starts, healthz_ready_s=healthz, page_ready_s=pages,
        model_warm_s=None if warm_s is None else round(warm_s, 3), stop_s=round(stop_s, 3), pollers=pollers,
        poll_rate_hz=rate_hz, poll_seconds=poll_seconds, requests=len(latencies) + errors, errors=errors,
        status_ms=status, cpu_count=os.cpu_count(), tiers=tier_timings, app_pids=pids,
    )


# -- the report --------------------------------------------------------------------------------------------------

SECTION_TITLE = "## Off the GPU"


def targets_met(result: LatencyResult, engine_overhead_pct: float | None) -> dict[str, bool | None]:
    """Each target: met, not met, or None when not measured. Any failed poll fails the /gpu_status target."""
    p99 = result.status_ms["p99"]
    return {
        "page_ready_s": result.page_ready_max_s <= TARGET_PAGE_READY_S,
        "gpu_status_p99_ms": None if math.isnan(p99) else result.errors == 0 and p99 <= TARGET_STATUS_P99_MS,
        "engine_overhead_pct": None if engine_overhead_pct is None else
        engine_overhead_pct <= TARGET_ENGINE_OVERHEAD_PCT,
        **{f"{timing.tier}_s": timing.target_met() for timing in result.tiers},
    }


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "**not met**"


def markdown_section(result: LatencyResult, engine_overhead_pct: float | None, *, command: str | None = None,
                     note: str | None = None) -> str:
    """The "Off the GPU" section: one row per target. ``engine_overhead_pct`` is the worst preset's figure from
    the preset table (None when the presets were not run). ``command`` and ``note`` are for a section written on
    its own (``--latency-only``); otherwise the document's header carries them."""
    status, met = result.status_ms, targets_met(result, engine_overhead_pct)
    overhead = "not run (`--latency-only`)" if engine_overhead_pct is None else (
        f"{engine_overhead_pct:+.1f} % (worst preset, table above)")
    lines = [
        SECTION_TITLE,
        "",
        *([f"Generated by `{command}`."] if command else []),
        f"`app.py --model {result.model}` started as a subprocess, {result.starts} fresh start(s), on a machine "
        f"with {result.cpu_count} CPU cores. `/gpu_status` polled for {result.poll_seconds:g} s once the model was "
        f"warm: {result.poll_rate_hz:g} requests/s in total from {result.pollers} keep-alive connections on a "
        f"fixed schedule (what {round(result.poll_rate_hz * 2)} open tabs send at the default 2 s poll interval).",
    ]
    if result.tiers:
        runs = len(result.tiers[0].seconds)
        lines.append(f"Then, on that warm app, {runs} job(s) per tier through its `/generate` endpoint "
                     "(gradio_client, as a script or the page submits them), interleaved tier by tier: what a "
                     "user waits for after clicking Generate.")
    if note:
        lines.append(f"Note: {note}")
    lines += [
        "",
        "| measure | figure | target | met? |",
        "|---|---|---|---|",
        f"| page ready (start → `GET /` 200 with the page), median / max; the target holds for the max | "
        f"{result.page_ready_median_s:.2f} s / {result.page_ready_max_s:.2f} s | ≤ {TARGET_PAGE_READY_S:g} s | "
        f"{_verdict(met['page_ready_s'])} |",
        f"| `/gpu_status` p99 at {result.poll_rate_hz:g} polls/s (p50 {status['p50']:.1f} ms, "
        f"p95 {status['p95']:.1f} ms, max {status['max']:.1f} ms; {result.errors} errors in {result.requests}) | "
        f"{status['p99']:.1f} ms | ≤ {TARGET_STATUS_P99_MS:g} ms | "
        f"{_verdict(met['gpu_status_p99_ms'])} |",
        f"| engine overhead over the plain pipeline | {overhead} | ≤ {TARGET_ENGINE_OVERHEAD_PCT:g} % | "
        f"{_verdict(met['engine_overhead_pct'])} |",
        *markdown_rows(result.model, result.tiers, _verdict),
        "",
        f"Per start: `/healthz` after {', '.join(f'{s:.2f}' for s in result.healthz_ready_s)} s, page after "
        f"{', '.join(f'{s:.2f}' for s in result.page_ready_s)} s. Last start: model warm after "
        f"{'–' if result.model_warm_s is None else f'{result.model_warm_s:.2f} s'} (loaded in the background, "
        f"after the page answers), stopped {result.stop_s:.2f} s after SIGTERM.",
        "",
    ]
    return "\n".join(lines)


def splice_section(document: str, section: str, title: str = SECTION_TITLE) -> str:
    """``document`` with its section headed ``title`` (by default "Off the GPU") replaced by ``section`` (appended
    if it has none), so a ``--latency-only`` run updates that section and keeps the preset table. A title that is
    the start of another's ("… tiny-wan" and "… tiny-wan22-ti2v") is given with its line end."""
    start = document.find(title)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section
    end = document.find("\n## ", start + len(title))
    rest = "" if end < 0 else document[end + 1:]
    return document[:start] + section + ("\n" + rest if rest else "")
