"""A job whose worker is lost under it (the process died, hung or broke its CUDA context) runs once more under the
same id, first in line, and a second loss fails it with the reason; which worker takes a job. In the app's own
process, with the real engine and tiny model: only the loss itself is staged, by a worker whose first runs end as a
dead process's would (``RunOutcome("lost")``) after writing a file, as an ffmpeg killed mid-video leaves one."""
from __future__ import annotations

from pathlib import Path

import pytest

from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.gpu.hardware import FixedGpuInfo
from i2v.service.jobs import JobManager
from i2v.workers.outcome import RunOutcome
from i2v.workers.pool import choose_worker
from i2v.workers.worker import InProcessWorker, Worker

LOST = "The worker process on GPU 1 (PID 4242) was killed (SIGKILL: the kernel's out-of-memory killer …)."


class LosesFirstRuns(InProcessWorker):
    """Its first ``losses`` runs die after writing half a video; later runs are real."""

    def __init__(self, engine: Engine, losses: int):
        super().__init__(engine)
        self.losses = losses

    def _run(self, job_id, request, on_progress, cancel) -> RunOutcome:
        if self.losses > 0:
            self.losses -= 1
            day = self.engine.output_dir / "20260101"
            day.mkdir(parents=True, exist_ok=True)
            (day / f".120000_{job_id}_01_seed1.mp4.partial").write_bytes(b"half a video")
            return RunOutcome("lost", "fatal", LOST)
        return super()._run(job_id, request, on_progress, cancel)


def tiny(image: Path) -> GenerationRequest:
    return GenerationRequest(image=str(image), prompt="a red ball rolling slowly to the left", model="tiny",
                             preset="fast-check", resolution=128, frames=4, steps=2, seeds=(5,))


def files_of(outputs: Path, job_id: str) -> list[str]:
    return sorted(p.name for p in outputs.rglob(f"*{job_id}*") if p.is_file())


def manager_with(tmp_path: Path, losses: int) -> JobManager:
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "outputs")
    return JobManager(engine, workers=[LosesFirstRuns(engine, losses)])


def test_a_job_whose_worker_died_runs_again_under_its_id_and_says_so(tmp_path, shared_photo_path):
    jobs = manager_with(tmp_path, losses=1)
    try:
        job_id = jobs.submit(tiny(shared_photo_path))
        done = jobs.wait(job_id, timeout=180)
        assert done.state == "done", done.error_message
        assert done.result["videos"][0]["seed"] == 5
        notices = [n for n in done.result["notices"] if n["code"] == "worker.job_ran_again"]
        assert len(notices) == 1 and "PID 4242" in notices[0]["message"]
        names = files_of(tmp_path / "outputs", job_id)
        assert not [name for name in names if name.endswith(".partial")]  # the lost run's half video is gone
        assert [name.rsplit(".", 1)[1] for name in names] == ["jpg", "json", "mp4"]
        assert [h.state for h in jobs.history()] == ["done"]  # one entry: nothing lost, nothing doubled
        assert jobs.workers()[0].jobs == {"done": 1, "failed": 0, "cancelled": 0, "lost": 1}
    finally:
        jobs.shutdown()


def test_a_job_lost_twice_fails_with_the_reason_and_leaves_no_file(tmp_path, shared_photo_path):
    jobs = manager_with(tmp_path, losses=2)
    try:
        job_id = jobs.submit(tiny(shared_photo_path))
        ended = jobs.wait(job_id, timeout=60)
        assert ended.state == "failed" and ended.error_kind == "fatal"
        assert "was killed (SIGKILL" in ended.error_message
        assert "second run: the first was lost too" in ended.error_message
        assert files_of(tmp_path / "outputs", job_id) == []
        later = jobs.submit(tiny(shared_photo_path))  # the worker serves on
        assert jobs.wait(later, timeout=180).state == "done"
    finally:
        jobs.shutdown()


class Resident(Worker):
    """A worker as the dispatcher sees it: a resident model and when it was last used."""

    def __init__(self, name: str, model: str | None, last_used: float):
        super().__init__(name, "0")
        self._model, self.last_used = model, last_used

    @property
    def resident_model(self) -> str | None:
        return self._model


@pytest.mark.parametrize("model, chosen", [("wan", "b"), ("ltx", "a"), ("tiny", "c")])
def test_a_job_goes_to_a_worker_with_its_model_else_the_least_recently_used(model, chosen):
    workers = [Resident("a", "tiny", 5.0), Resident("b", "wan", 9.0), Resident("c", "tiny", 7.0)]
    if model == "tiny":
        workers[0], workers[2] = Resident("a", "tiny", 8.0), Resident("c", "tiny", 7.0)
    assert choose_worker(model, workers).name == chosen
    assert choose_worker(model, []) is None
