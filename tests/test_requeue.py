"""Interrupted jobs come back with one action: the job manager, the app's /requeue API, and
``python -m i2v requeue`` both through a running app and on its own."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from gradio_client import Client

from i2v import cli
from i2v.engine.engine import Engine
from i2v.errors import BadInputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.service.jobs import JobManager, request_settings
from i2v.service.jobstore import JobRecord, JobStore
from i2v.engine.request import GenerationRequest
from i2v.engine.video import probe_mp4

from web_support import free_port, running_app


def crashed_job(outputs: Path, photo_path: Path, job_id: str = "dead0001", prompt: str = "waves crashing") -> str:
    """What a kill -9 leaves behind: a job recorded as running, its picture kept in outputs/inputs/."""
    kept = outputs / "inputs" / f"{job_id}.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(photo_path.read_bytes())
    request = GenerationRequest(image=str(kept), prompt=prompt, model="tiny", preset="fast-check", resolution=128,
                                frames=4, steps=2, seeds=(1234,))
    store = JobStore.in_folder(outputs)
    store.add(JobRecord(id=job_id, state="queued", created_at=time.time(), settings=request_settings(request),
                        image_path=str(kept)))
    store.mark_running(job_id)
    return job_id


def test_an_interrupted_job_runs_again_with_its_settings_and_seed(tmp_path, photo_path):
    outputs = tmp_path / "outputs"
    old = crashed_job(outputs, photo_path)
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs))
    try:
        assert [r.id for r in jobs.recover()] == [old]
        assert jobs.interrupted() == [old]
        new = jobs.requeue(old)
        done = jobs.wait(new, timeout=120)
        assert done.state == "done", done.error_message
        assert done.settings["prompt"] == "waves crashing" and done.result["videos"][0]["seed"] == 1234
        assert probe_mp4(Path(done.result["videos"][0]["path"]))["frames"] == 4
        before = jobs.status(old)
        assert before.state == "interrupted" and f"Re-queued as job {new}" in before.error_message  # kept, annotated
        assert jobs.interrupted() == []
        with pytest.raises(BadInputError, match=f"re-queued already, as job {new}"):
            jobs.requeue(old)
        with pytest.raises(BadInputError, match="only interrupted jobs"):
            jobs.requeue(new)
        with pytest.raises(BadInputError, match="There is no job"):
            jobs.requeue("nosuchjob")
    finally:
        jobs.shutdown()


def test_a_lost_picture_is_said_plainly(tmp_path, photo_path):
    outputs = tmp_path / "outputs"
    old = crashed_job(outputs, photo_path)
    (outputs / "inputs" / f"{old}.png").unlink()
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs))
    try:
        jobs.recover()
        with pytest.raises(BadInputError, match="picture of job dead0001 is gone"):
            jobs.requeue(old)
    finally:
        jobs.shutdown()


def test_cli_requeue_goes_through_the_running_app(tmp_path, photo_path, capsys):
    outputs = tmp_path / "outputs"
    old = crashed_job(outputs, photo_path)
    with running_app(outputs) as server:  # start-up marks it interrupted
        assert cli.main(["requeue", "--url", server.url]) == 0
        line = capsys.readouterr().out
        assert f"{old} → queued again as" in line and server.url in line
        new = line.split("queued again as ")[1].split()[0]
        done = server.app.jobs.wait(new, timeout=120)  # it ran in the app, under the app's engine lock
        assert done.state == "done", done.error_message
        assert cli.main(["requeue", "--url", server.url]) == 0
        assert "no interrupted job" in capsys.readouterr().out
        # The API itself: a job that is not interrupted is refused with the reason.
        client = Client(server.url, verbose=False)
        with pytest.raises(Exception, match="only interrupted jobs"):
            client.predict(new, api_name="/requeue")
        client.close()


def test_cli_requeue_without_an_app_runs_the_job_itself(tmp_path, photo_path, capsys):
    outputs = tmp_path / "outputs"
    old = crashed_job(outputs, photo_path)
    nobody = f"http://127.0.0.1:{free_port()}/"
    assert cli.main(["requeue", "--url", nobody, "--output-dir", str(outputs)]) == 0
    out = capsys.readouterr().out
    assert f"{old} → " in out and ": done: " in out
    video = Path(out.split(": done: ")[1].strip())
    assert probe_mp4(video)["frames"] == 4
    assert cli.main(["jobs", "--output-dir", str(outputs)]) == 0
    listing = capsys.readouterr().out
    assert "interrupted" in listing and "done" in listing and "Re-queued as job" in listing


def test_a_second_app_on_the_same_output_folder_is_refused_not_let_loose_on_its_jobs(tmp_path, photo_path, capsys):
    """Start-up marks running jobs interrupted and deletes their files: right after a crash, ruinous beside a live
    app. The folder lock tells the two apart; it is released on stop (and by the kernel on kill -9)."""
    from i2v.service.folder_lock import FolderInUseError
    from i2v.settings import load_settings
    from i2v.web.server import create_app

    outputs = tmp_path / "outputs"
    settings = load_settings(["--model", "tiny", "--output-dir", str(outputs)], environ={})
    with running_app(outputs) as first:
        with pytest.raises(FolderInUseError, match=r"Another I2V Studio \(PID \d+\) is using the output folder"):
            create_app(settings)
        nobody = f"http://127.0.0.1:{free_port()}/"
        assert cli.main(["requeue", "--url", nobody, "--output-dir", str(outputs)]) == 1
        assert "is using the output folder" in capsys.readouterr().err
        assert first.app.jobs.queue_length() == 0
    second = create_app(settings)  # the first one stopped: free again
    second.close()
