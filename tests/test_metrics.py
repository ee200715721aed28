"""``GET /metrics``: Prometheus text that the client library's own parser reads, and that moves when jobs run,
succeed and are cancelled. GPU gauges come from the monitor's snapshot."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from i2v.gpu.fake_monitor import FakeGpuMonitor
from i2v.engine.request import GenerationRequest
from i2v.web.metrics import Metrics

from conftest import photo_like
from web_support import running_app

GIB = 2**30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("metrics-outputs")) as running:
        yield running


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("metrics-input") / "input.png"
    photo_like(320, 256).save(path)
    return path


def tiny(image: Path, **changes) -> GenerationRequest:
    values = dict(image=str(image), prompt="a red ball rolling slowly to the left", model="tiny",
                  preset="fast-check", resolution=128, frames=4, steps=2)
    values.update(changes)
    return GenerationRequest(**values)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} for every sample."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(server) -> dict[tuple[str, tuple], float]:
    response = httpx.get(server.url + "metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_list_every_series(server):
    samples = scrape(server)
    names = {name for name, _ in samples}
    for expected in ("i2v_jobs_started_total", "i2v_jobs_succeeded_total", "i2v_jobs_cancelled_total",
                     "i2v_plan_downgrades_total", "i2v_nan_retries_total", "i2v_oom_recoveries_total",
                     "i2v_generation_seconds_count", "i2v_generation_seconds_sum", "i2v_generation_seconds_bucket",
                     "i2v_queue_length", "i2v_uptime_seconds"):
        assert expected in names, expected
    for kind in ("bad_input", "recoverable", "fatal", "internal"):
        assert value(samples, "i2v_jobs_failed_total", kind=kind) == 0
    assert value(samples, "i2v_uptime_seconds") > 0


def test_a_job_moves_the_counters_and_the_histogram(server, image):
    before = scrape(server)
    jobs = server.app.jobs
    status = jobs.wait(jobs.submit(tiny(image)), timeout=120)
    assert status.state == "done", status.error_message
    after = scrape(server)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("i2v_jobs_started_total") == 1
    assert moved("i2v_jobs_succeeded_total") == 1
    assert moved("i2v_generation_seconds_count") == 1
    assert moved("i2v_generation_seconds_sum") > 0
    assert moved("i2v_generation_seconds_bucket", le="+Inf") == 1
    assert moved("i2v_jobs_cancelled_total") == 0
    assert moved("i2v_jobs_failed_total", kind="fatal") == 0
    assert value(after, "i2v_queue_length") == 0


def test_a_request_refused_at_submit_counts_nothing(server, image):
    before = scrape(server)
    with pytest.raises(Exception):  # noqa: B017 - BadInputError; the counters are the point
        server.app.jobs.submit(tiny(image, frames=1000))
    after = scrape(server)
    assert value(after, "i2v_jobs_started_total") == value(before, "i2v_jobs_started_total")


def test_a_cancelled_job_counts_as_cancelled(server, image):
    before = scrape(server)
    jobs = server.app.jobs
    job_id = jobs.submit(tiny(image, resolution=256, frames=16, steps=250))
    deadline = time.monotonic() + 60
    while jobs.status(job_id).state != "running":
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.05)
    assert jobs.cancel(job_id)
    assert jobs.wait(job_id, timeout=60).state == "cancelled"
    after = scrape(server)
    assert value(after, "i2v_jobs_started_total") - value(before, "i2v_jobs_started_total") == 1
    assert value(after, "i2v_jobs_cancelled_total") - value(before, "i2v_jobs_cancelled_total") == 1
    assert value(after, "i2v_jobs_succeeded_total") == value(before, "i2v_jobs_succeeded_total")
    assert value(after, "i2v_generation_seconds_count") == value(before, "i2v_generation_seconds_count")


def test_gpu_memory_gauges_come_from_the_monitor():
    metrics = Metrics(monitor=FakeGpuMonitor.single(total_gib=80, used_gib=68), queue_length=lambda: 3)
    samples = parse(metrics.render().decode("utf-8"))
    assert value(samples, "i2v_gpu_memory_total_bytes", gpu="0") == 80 * GIB
    assert value(samples, "i2v_gpu_memory_used_bytes", gpu="0") == 68 * GIB
    assert value(samples, "i2v_queue_length") == 3


def test_without_a_gpu_the_gpu_gauges_have_no_samples():
    samples = parse(Metrics(monitor=FakeGpuMonitor.none(), queue_length=lambda: 0).render().decode("utf-8"))
    assert not any(name.startswith("i2v_gpu_") for name, _ in samples)


def test_notices_count_downgrades_nan_retries_and_oom_recoveries():
    """The engine's notice codes (planner, run) map onto the counters; a downgrade counts once per job."""
    from types import SimpleNamespace

    from i2v.findings import Finding

    metrics = Metrics(monitor=FakeGpuMonitor.none(), queue_length=lambda: 0)
    codes = ["plan.downgraded", "plan.downgraded", "numerics.run_retried", "numerics.decode_retried",
             "plan.oom_retry", "plan.memory_saving"]
    result = SimpleNamespace(notices=[Finding(code, "") for code in codes])
    metrics.job_finished("j1", "done", kind=None, result=result, seconds=12.0)
    metrics.job_finished("j2", "failed", kind="recoverable", result=None, seconds=1.0)
    samples = parse(metrics.render().decode("utf-8"))
    assert value(samples, "i2v_plan_downgrades_total") == 1
    assert value(samples, "i2v_nan_retries_total") == 2
    assert value(samples, "i2v_oom_recoveries_total") == 1
    assert value(samples, "i2v_jobs_failed_total", kind="recoverable") == 1
    assert value(samples, "i2v_generation_seconds_bucket", le="20.0") == 1
