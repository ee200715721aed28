"""The files of a job run on a Ray actor, on the app's side (no Ray needed): what is sent with the job and what is
written when the finished files come back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from i2v.engine.request import GenerationRequest
from i2v.workers.outcome import RunOutcome
from i2v.workers.ray_files import ShippedFileError, pictures_of, relocated, write_shipped

SCRATCH = "/tmp/i2v-ray-gpu0-abc123"


def test_the_pictures_a_job_names_travel_as_bytes_and_pictures_given_as_bytes_stay_in_the_request(tmp_path):
    first, last = tmp_path / "first.png", tmp_path / "last.webp"
    first.write_bytes(b"first picture")
    last.write_bytes(b"last picture")
    request = GenerationRequest(image=str(first), prompt="a boat", model="tiny", last_image=last)
    assert pictures_of(request) == {"image": ("first.png", b"first picture"), "last_image": ("last.webp", b"last picture")}
    assert pictures_of(GenerationRequest(image=b"\x89PNG", prompt="a boat", model="tiny")) == {}


def test_a_record_comes_back_pointing_at_the_apps_folder(tmp_path):
    record = {"job_id": "j1", "reproduce": f"python -m i2v generate --image {SCRATCH}/inputs/ab.png --seed 7",
              "model": {"source": "/models/wan"}}
    path = write_shipped(tmp_path, "20261205/1415_j1_01_seed7.json", json.dumps(record).encode(), SCRATCH)
    assert path == tmp_path / "20261205" / "1415_j1_01_seed7.json"
    written = json.loads(path.read_text())
    assert written["reproduce"] == f"python -m i2v generate --image {tmp_path}/inputs/ab.png --seed 7"
    assert written["model"] == {"source": "/models/wan"}  # paths outside the scratch folder are left alone
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no partial file left


@pytest.mark.parametrize("name", ["../escape.mp4", "/etc/cron.d/job", "20261205/../../escape.mp4", ""])
def test_a_file_named_outside_the_output_folder_is_refused_and_not_written(tmp_path, name):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with pytest.raises(ShippedFileError):
        write_shipped(outputs, name, b"data", SCRATCH)
    assert list(tmp_path.rglob("*escape*")) == [] and list(outputs.iterdir()) == []


def test_the_outcome_names_the_apps_files_not_the_actors(tmp_path):
    video = f"{SCRATCH}/20261205/1415_j1_01_seed7.mp4"
    outcome = RunOutcome("done", summary={"videos": [{"path": video, "poster": video[:-4] + ".jpg", "seed": 7}],
                                          "notices": [{"message": f"kept {SCRATCH}-other/x"}]})
    moved = relocated(outcome, SCRATCH, tmp_path)
    assert moved.summary["videos"][0] == {"path": f"{tmp_path}/20261205/1415_j1_01_seed7.mp4",
                                          "poster": f"{tmp_path}/20261205/1415_j1_01_seed7.jpg", "seed": 7}
    assert moved.summary["notices"][0]["message"] == f"kept {SCRATCH}-other/x"  # another folder's name: untouched
    assert moved.state == "done"
