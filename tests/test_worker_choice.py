"""Which worker takes a job when GPUs differ in free memory (issue 19: "a job goes to a worker whose resident model
matches and whose free memory fits the plan, else to the least recently used idle worker"). GPUs are simulated
(``FakeGpuMonitor``: another program's memory is ``used_bytes``); the last test runs jobs through the real
``JobManager`` and planner on the tiny model, with workers that only note where each job ran."""
from __future__ import annotations

import pytest

from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.gpu.fake_monitor import FakeGpu, FakeGpuMonitor
from i2v.planning.planner import InsufficientMemoryError, MemoryPlanner
from i2v.service.jobs import JobManager
from i2v.workers.gpu_room import GpuRoom, WorkersGpuView
from i2v.workers.outcome import RunOutcome
from i2v.workers.pool import choose_worker
from i2v.workers.worker import Worker

GIB = 2**30
PEAK = 10 * GIB  # a job's predicted peak


class Resident(Worker):
    """A worker as the dispatcher sees it: its GPU, resident model and last use."""

    def __init__(self, name: str, gpu: str, model: str | None, last_used: float, held_gib: float = 0.0):
        super().__init__(name, gpu)
        self._model, self.last_used, self._held = model, last_used, int(held_gib * GIB)

    @property
    def resident_model(self) -> str | None:
        return self._model

    @property
    def held_bytes(self) -> int:
        return self._held


def gpus(*free_gib: float) -> FakeGpuMonitor:
    """24 GiB cards with ``free_gib`` free each (the rest taken by other programs)."""
    return FakeGpuMonitor([FakeGpu(total_bytes=24 * GIB, used_bytes=int((24 - free) * GIB)) for free in free_gib])


def chosen(monitor: FakeGpuMonitor, workers: list[Worker], model: str = "wan", peak: int | None = PEAK) -> str:
    room = GpuRoom(monitor)
    return choose_worker(model, workers, lambda worker: room.fits(worker, peak)).name


def test_the_resident_model_wins_when_its_gpu_has_room_even_if_it_ran_last():
    workers = [Resident("gpu0", "0", "wan", last_used=9.0), Resident("gpu1", "1", None, last_used=1.0)]
    assert chosen(gpus(20, 20), workers) == "gpu0"


def test_a_gpu_without_room_is_passed_over_for_one_with_room_even_with_the_model_resident():
    workers = [Resident("gpu0", "0", "wan", last_used=1.0), Resident("gpu1", "1", "ltx", last_used=9.0),
               Resident("gpu2", "2", None, last_used=5.0)]
    # GPU 0 holds the model but another program took its memory; GPUs 1 and 2 both have room: the least recently
    # used of them takes the job.
    assert chosen(gpus(6, 20, 20), workers) == "gpu2"


def test_when_no_gpu_has_room_the_resident_model_then_the_least_recently_used_decide():
    workers = [Resident("gpu0", "0", None, last_used=1.0), Resident("gpu1", "1", "wan", last_used=9.0)]
    assert chosen(gpus(4, 4), workers) == "gpu1"  # that worker's engine then plans smaller for its GPU
    assert chosen(gpus(4, 4), workers, model="ltx") == "gpu0"


def test_room_means_room_after_the_planners_safety_margin():
    workers = [Resident("gpu0", "0", "wan", last_used=1.0), Resident("gpu1", "1", None, last_used=9.0)]
    monitor = gpus(10.2, 20)  # 10.2 GiB free is not room for a 10 GiB peak: the planner keeps 0.5 GiB + 5 % free
    assert MemoryPlanner(monitor).budget_of(int(10.2 * GIB)) < PEAK
    assert chosen(monitor, workers) == "gpu1"
    assert chosen(gpus(11.2, 20), workers) == "gpu0"


def test_cpu_workers_workers_on_other_boxes_and_jobs_without_a_prediction_are_not_checked():
    cpu = [Resident("cpu0", "cpu", None, last_used=1.0), Resident("cpu1", "cpu", "wan", last_used=9.0)]
    assert chosen(FakeGpuMonitor.none(), cpu) == "cpu1"
    assert [worker.gpu_index for worker in cpu] == [None, None]
    workers = [Resident("gpu0", "0", "wan", last_used=9.0), Resident("gpu1", "1", None, last_used=1.0)]
    assert chosen(gpus(1, 20), workers, peak=None) == "gpu0"  # nothing predicted: the resident model decides
    # GPU 1 is not in the reading (NVML could not read it): nothing says it has no room, while GPU 0 has none.
    assert chosen(gpus(1), workers) == "gpu1"
    workers[1].node = "another-box"  # its GPU 1 is that box's, not the GPU 1 this box's monitor reads
    assert chosen(gpus(1, 1), workers) == "gpu1"


def test_the_memory_a_worker_holds_for_its_model_is_room_for_its_own_next_job():
    """GPU 0 shows 4 GiB free, but 18 GiB of what is taken is the worker's own resident model: its next job reuses
    it. Another program's 18 GiB (GPU 1) is no room at all."""
    workers = [Resident("gpu0", "0", "wan", last_used=9.0, held_gib=18), Resident("gpu1", "1", None, last_used=1.0)]
    monitor = gpus(4, 4)
    room = GpuRoom(monitor)
    assert [room.fits(worker, PEAK) for worker in workers] == [True, False]
    assert chosen(monitor, workers, model="ltx") == "gpu0"  # its model is replaced: the held memory is freed first
    monitor.set_used(0, 23 * GIB)  # 3 GiB more taken by someone else: 1 + 18 GiB is still room for 10 GiB
    assert room.fits(workers[0], PEAK) is True
    monitor.set_used(0, int(23.8 * GIB))  # 0.2 + 18 GiB less the planner's margin: no room for 18 GiB
    assert room.fits(workers[0], 18 * GIB) is False


def test_the_apps_planner_counts_its_workers_memory_as_free_on_their_gpus():
    workers = [Resident("gpu0", "0", "wan", last_used=1.0, held_gib=18),
               Resident("gpu1", "1", "wan", last_used=1.0, held_gib=18),
               Resident("cpu0", "cpu", "wan", last_used=1.0)]
    workers[1].node = "another-box"  # its GPU 1 is that box's: this box's GPU 1 is another program's
    view = WorkersGpuView(gpus(4, 4), workers=lambda: [worker.info() for worker in workers])
    free = [round(gpu.free_bytes / GIB, 1) for gpu in view.devices()]
    assert free == [22.0, 4.0]
    assert view.held_per_gpu() == {0: 18 * GIB}


def test_a_second_job_on_a_card_holding_the_model_is_planned_as_asked_not_shrunk(shared_photo_path, tmp_path):
    """A 24 GiB card whose worker holds the tiny model (plus its cache) in all but 0.3 GiB: planning with NVML's free
    memory alone would shrink or refuse the job, though it reuses that very memory."""
    monitor = FakeGpuMonitor([FakeGpu(total_bytes=24 * GIB, used_bytes=int(23.7 * GIB))])
    workers = [Resident("gpu0", "0", "tiny", last_used=1.0, held_gib=23.5)]
    request = GenerationRequest(image=str(shared_photo_path), prompt="a ball rolling slowly to the left",
                                model="tiny", width=256, height=256, frames=8, steps=2, seeds=(1,))
    as_asked = Engine(gpu_info=WorkersGpuView(monitor, workers=lambda: [w.info() for w in workers]),
                      output_dir=tmp_path).prepare(request)
    assert (as_asked.params.width, as_asked.params.height, as_asked.params.frames) == (256, 256, 8)
    assert as_asked.plan.cpu_offload == "none"
    assert not {"plan.downgraded", "plan.memory_saving"} & {notice.code for notice in as_asked.notices}
    with pytest.raises(InsufficientMemoryError, match="0.3 GiB free"):  # what the page said before
        Engine(gpu_info=monitor, output_dir=tmp_path).prepare(request)


class NotesWhereJobsRan(Resident):
    """Runs nothing: notes (prompt, worker) in ``ran`` and ends the job as done."""

    def __init__(self, name: str, gpu: str, model: str | None, last_used: float, ran: list[tuple[str, str]]):
        super().__init__(name, gpu, model, last_used)
        self.ran = ran

    def _run(self, job_id, request, on_progress, cancel) -> RunOutcome:
        self.ran.append((request.prompt, self.name))
        return RunOutcome("done", summary={"videos": [], "notices": []})


def test_the_job_manager_sends_a_job_where_its_planned_peak_fits(tmp_path, shared_photo_path):
    monitor = gpus(0.6, 24)  # GPU 0: the tiny model's ~0.53 GiB peak fits its 0.6 GiB free, not after the margin
    engine = Engine(gpu_info=monitor, output_dir=tmp_path / "outputs")
    ran: list[tuple[str, str]] = []
    resident = NotesWhereJobsRan("gpu0", "0", "tiny", last_used=0.0, ran=ran)
    other = NotesWhereJobsRan("gpu1", "1", None, last_used=5.0, ran=ran)
    jobs = JobManager(engine, workers=[resident, other], gpu_room=GpuRoom(monitor))
    try:
        def run(prompt: str) -> None:
            request = GenerationRequest(image=str(shared_photo_path), prompt=prompt, model="tiny",
                                        preset="fast-check", resolution=128, frames=4, steps=2, seeds=(1,))
            assert jobs.wait(jobs.submit(request), timeout=60).state == "done"

        run("a ball rolling slowly to the left")  # GPU 0 is full: the job goes to GPU 1 despite the model
        monitor.set_used(0, 0)  # the other program ended
        run("a ball rolling slowly to the right")  # now the resident model's GPU has room
        assert ran == [("a ball rolling slowly to the left", "gpu1"),
                                         ("a ball rolling slowly to the right", "gpu0")]
    finally:
        jobs.shutdown()
