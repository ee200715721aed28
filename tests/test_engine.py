"""The engine end to end on the tiny model: files, records, candidates, progress, cancel. Determinism and cancel
within a step are checked for every family in test_family_behaviour.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from i2v.engine.engine import Engine
from i2v.errors import BadInputError, JobCancelled
from i2v.gpu.hardware import FixedGpuInfo
from i2v.engine.progress import CancelToken
from i2v.engine.request import GenerationRequest
from i2v.engine.video import probe_mp4, read_mp4_comment

SMALL = dict(model="tiny", width=64, height=64, frames=8, steps=3, fps=8)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    """One engine (and one loaded tiny model) for the module, on a machine without GPU."""
    return Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path_factory.mktemp("outputs"))


def request(photo_path: Path, **changes) -> GenerationRequest:
    fields = {**SMALL, "image": photo_path, "prompt": "a boat drifting slowly to the left, waves rippling"}
    fields.update(changes)
    return GenerationRequest(**fields)


def visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_tiny_run_writes_playable_mp4_and_matching_sidecar(engine, photo_path):
    result = engine.generate(request(photo_path, seeds=(7,)))

    assert len(result.videos) == 1
    video = result.videos[0]
    probe = probe_mp4(video.path)
    assert probe["frames"] == 8 and probe["fps"] == 8.0
    assert probe["codec"] == "h264" and probe["pix_fmt"].startswith("yuv420p")
    assert probe["size"] == (64, 64)

    sidecar = json.loads(video.sidecar_path.read_text())
    assert sidecar == video.record
    embedded = json.loads(read_mp4_comment(video.path))
    # The embedded copy is written before encoding finishes, so only its encode timing may be missing.
    assert {k: v for k, v in embedded.items() if k != "timings_s"} == {
        k: v for k, v in sidecar.items() if k != "timings_s"
    }
    params = sidecar["params"]
    assert (params["seed"], params["frames"], params["steps"], params["fps"]) == (7, 8, 3, 8)
    assert (params["width"], params["height"], params["dtype"]) == (64, 64, "float32")
    assert sidecar["model"]["random_weights"] is True
    assert sidecar["model"]["revision"].startswith("tiny-")
    assert any(w["code"] == "model.random_weights" for w in sidecar["model_warnings"])
    assert sidecar["versions"]["torch"] and sidecar["versions"]["diffusers"] == "0.42.1"
    assert {"prepare", "load", "denoise", "decode", "encode"} <= set(sidecar["timings_s"])
    assert sidecar["memory"]["process_peak_rss_bytes"] > 0
    assert sidecar["plan"]["device"] == "cpu" and sidecar["plan"]["gpu_name"] is None
    assert "--seed 7" in sidecar["reproduce"] and "--model tiny" in sidecar["reproduce"]
    assert sidecar["input_image"]["size"] == [320, 256]


def test_candidates_get_consecutive_seeds_and_one_file_each(engine, photo_path):
    result = engine.generate(request(photo_path, seeds=(40,), candidates=3))
    assert [v.seed for v in result.videos] == [40, 41, 42]
    assert len({v.path for v in result.videos}) == 3
    assert len({v.record["video"]["frames_sha256"] for v in result.videos}) == 3
    assert all(v.path.exists() and v.sidecar_path.exists() for v in result.videos)
    # A candidate is the same video as a single run with its seed: candidates are independent runs.
    alone = engine.generate(request(photo_path, seeds=(41,))).videos[0]
    assert alone.record["video"]["frames_sha256"] == result.videos[1].record["video"]["frames_sha256"]


def test_explicit_output_path_and_suffixes_for_several_videos(engine, photo_path, tmp_path):
    single = engine.generate(request(photo_path, seeds=(1,), output_path=tmp_path / "clip.mp4"))
    assert single.videos[0].path == tmp_path / "clip.mp4"
    assert (tmp_path / "clip.json").exists()
    several = engine.generate(request(photo_path, seeds=(1, 5), output_path=tmp_path / "many.mp4"))
    assert [v.path.name for v in several.videos] == ["many_01.mp4", "many_02.mp4"]
    assert [v.seed for v in several.videos] == [1, 5]


def test_progress_reports_every_step_in_order(engine, photo_path):
    events = []
    engine.generate(request(photo_path, steps=4, seeds=(3,)), on_progress=events.append)
    denoise = [e for e in events if e.stage == "denoise"]
    assert [e.step for e in denoise] == [1, 2, 3, 4]
    assert all(e.total_steps == 4 for e in denoise)
    stages = [e.stage for e in events]
    assert stages[0] == "load" and stages[-1] == "done"
    assert stages.index("decode") > stages.index("denoise") and stages.index("encode") > stages.index("decode")
    elapsed = [e.elapsed_s for e in events]
    assert elapsed == sorted(elapsed)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancel_mid_run_leaves_no_file_behind(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    token = CancelToken()
    steps_seen = []

    def cancel_in_second_candidate(event):
        if event.stage == "denoise":
            steps_seen.append((event.candidate, event.step))
            if event.candidate == 2 and event.step == 2:
                token.cancel()

    with pytest.raises(JobCancelled):
        engine.generate(request(photo_path, steps=5, seeds=(9,), candidates=2), cancel=token,
                        on_progress=cancel_in_second_candidate)
    # Cancelled within a step: candidate 2 never reached step 3.
    assert (2, 2) in steps_seen and (2, 3) not in steps_seen
    # The finished first candidate is removed too: a cancelled job leaves nothing.
    assert visible_files(tmp_path / "out") == []
    # The engine keeps working afterwards.
    assert engine.generate(request(photo_path, seeds=(9,))).videos[0].path.exists()


def test_cancel_before_start_runs_nothing(engine, photo_path):
    token = CancelToken()
    token.cancel()
    events = []
    with pytest.raises(JobCancelled):
        engine.generate(request(photo_path), cancel=token, on_progress=events.append)
    assert not [e for e in events if e.stage == "denoise"]


def test_bad_request_fails_before_loading_anything(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    with pytest.raises(BadInputError, match="frames"):
        engine.generate(request(photo_path, frames=1))
    with pytest.raises(BadInputError):
        bogus = tmp_path / "notes.png"
        bogus.write_text("hello")
        engine.generate(request(bogus))
    assert engine.backend is None
    assert not (tmp_path / "out").exists()


def test_warnings_and_notices_reach_the_result_and_the_sidecar(engine, photo_path):
    result = engine.generate(
        request(photo_path, width=100, height=70, steps=3, guidance=14.0, prompt="beautiful cinematic masterpiece")
    )
    codes = {f.code for f in result.notices} | {f.code for f in result.warnings}
    assert "size.snapped" in codes
    assert "prompt.abstract_only" in codes
    assert "params.few_steps_high_guidance" in codes
    record = result.videos[0].record
    assert (record["params"]["width"], record["params"]["height"]) == (128, 64)
    assert {n["code"] for n in record["notices"]} >= {"size.snapped"}
    assert {w["code"] for w in record["warnings"]} >= {"prompt.abstract_only", "params.few_steps_high_guidance"}


def test_auto_enhance_changes_what_the_model_sees_and_is_recorded(engine, photo_path):
    import numpy as np

    plain = engine.prepare(request(photo_path))
    enhanced = engine.prepare(request(photo_path, auto_enhance=True))
    assert plain.image.size == enhanced.image.size == (64, 64)
    contrast = [float(np.asarray(job.image.convert("L"), dtype=np.float32).std()) for job in (plain, enhanced)]
    assert contrast[1] > contrast[0] * 1.1
    assert "image.enhanced" in {n.code for n in enhanced.notices}
    assert "image.enhanced" not in {n.code for n in plain.notices}
    record = engine.generate(request(photo_path, auto_enhance=True, seeds=(2,))).videos[0].record
    assert record["params"]["auto_enhance"] is True and "--auto-enhance" in record["reproduce"]
