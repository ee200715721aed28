"""The batch command line, as a user runs it: exit codes, one clear line on bad input, files and JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from i2v.cli import main
from i2v.engine.video import probe_mp4

REPO = Path(__file__).resolve().parent.parent
TINY_ARGS = ["--model", "tiny", "--width", "64", "--height", "64", "--frames", "8", "--steps", "2", "--fps", "12"]


def test_python_dash_m_generates_a_playable_video_with_json_record(photo_path, tmp_path):
    """The command from the README, in a fresh process with no GPU and no network."""
    out = tmp_path / "out.mp4"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "i2v", "generate", "--image", str(photo_path), "--prompt",
         "a sailboat drifting slowly to the left, waves rippling", *TINY_ARGS, "--seed", "3",
         "--output", str(out), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    assert len(records) == 1
    record = records[0]
    assert record["path"] == str(out) and record["sidecar"] == str(out.with_suffix(".json"))
    assert probe_mp4(out)["frames"] == 8 and probe_mp4(out)["fps"] == 12.0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["params"]["seed"] == 3 and sidecar["video"]["frames"] == 8
    assert "Traceback" not in completed.stderr


def test_info_prints_the_embedded_record_of_a_video_that_travelled_alone(photo_path, tmp_path, capsys):
    out = tmp_path / "alone.mp4"
    assert main(["generate", "--image", str(photo_path), "--prompt", "fire flickering", *TINY_ARGS, "--seed", "8",
                 "--output", str(out)]) == 0
    out.with_suffix(".json").unlink()  # the sidecar is lost; the video still knows how it was made
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["params"]["seed"] == 8 and record["params"]["prompt"] == "fire flickering"
    assert "--seed 8" in record["reproduce"]
    not_ours = tmp_path / "plain.mp4"
    not_ours.write_bytes(b"\x00" * 100)
    assert main(["info", str(not_ours)]) == 2


def test_batch_over_prompts_and_seeds(photo_path, tmp_path, capsys):
    out = tmp_path / "batch.mp4"
    status = main(["generate", "--image", str(photo_path), "--prompt", "snow falling slowly",
                   "--prompt", "camera zooming in slowly on the house", *TINY_ARGS, "--seed", "10", "--seed", "20",
                   "--output", str(out), "--json"])
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["path"]).name for r in records] == [
        "batch_p01_01.mp4", "batch_p01_02.mp4", "batch_p02_01.mp4", "batch_p02_02.mp4"]
    assert [r["params"]["seed"] for r in records] == [10, 20, 10, 20]
    assert [r["params"]["prompt"] for r in records][::2] == ["snow falling slowly",
                                                            "camera zooming in slowly on the house"]
    assert all(Path(r["path"]).exists() for r in records)


def test_human_output_names_file_seed_and_random_weight_warning(photo_path, tmp_path, capsys):
    status = main(["generate", "--image", str(photo_path), "--prompt", "leaves falling gently", *TINY_ARGS,
                   "--seed", "4", "--output-dir", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "seed 4" in out and "8 frames @ 12 fps" in out and ".mp4" in out
    assert "random weights" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--frames", "abc"], "invalid int value"),
        (["--frames", "1"], "frames"),
        (["--cfg", "nan"], "guidance"),
        (["--steps", "-5"], "steps"),
        (["--resolution", "640"], "640p is not offered"),
        (["--resolution", "512", "--width", "64", "--height", "64"], "not both"),
        (["--seed", "-1"], "seed"),
        (["--dtype", "fp8"], "invalid choice"),
        (["--candidates", "0"], "candidates"),
        (["--output", "video.avi"], ".mp4"),
    ],
)
def test_bad_input_exits_2_with_one_line(photo_path, tmp_path, capsys, args, fragment):
    base = ["generate", "--image", str(photo_path), "--prompt", "waves crashing", "--model", "tiny"]
    size = [] if "--resolution" in args else ["--width", "64", "--height", "64"]
    try:
        status = main(base + size + args)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and fragment in err
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.mp4"))


def test_bad_image_and_missing_prompt_exit_2(tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["generate", "--image", str(text), "--prompt", "waves", "--model", "tiny"]) == 2
    assert "image" in capsys.readouterr().err.lower()
    assert main(["generate", "--image", str(tmp_path / "missing.jpg"), "--prompt", "waves", "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert main(["generate", "--image", str(text), "--prompt", "   ", "--model", "tiny"]) == 2
    assert "prompt is empty" in capsys.readouterr().err


def test_unknown_model_is_bad_input(photo_path, capsys):
    assert main(["generate", "--image", str(photo_path), "--prompt", "waves", "--model", "no such model"]) == 2
    assert "neither" in capsys.readouterr().err


def test_missing_model_offline_fails_with_how_to_get_it(photo_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = main(["generate", "--image", str(photo_path), "--prompt", "waves crashing",
                   "--model", "someone/absent-model", "--family", "i2vgen-xl", "--resolution", "512",
                   "--frames", "8", "--steps", "2"])
    err = capsys.readouterr().err
    assert status == 1
    assert "start_app.sh download someone/absent-model" in err and "Traceback" not in err


def test_presets_and_lint_commands(capsys):
    assert main(["presets"]) == 0  # tiny by default: toy sizes, said plainly; no turbo (no distilled LoRA)
    listing = capsys.readouterr().out
    assert listing.index("fast-check") < listing.index("balanced") < listing.index("high-quality")
    assert "Toy size: 128p" in listing and "turbo" not in listing
    assert main(["presets", "--model", "ali-vilab/i2vgen-xl"]) == 0
    assert "512p, 16 frames, 50 steps" in capsys.readouterr().out
    assert main(["presets", "--model", "THUDM/CogVideoX-5b-I2V"]) == 0
    assert "480p (720×480), 49 frames, 50 steps" in capsys.readouterr().out
    assert main(["lint", "beautiful cinematic masterpiece"]) == 0
    assert "prompt.abstract_only" in capsys.readouterr().out


def test_download_without_network_says_how_to_get_the_model(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    assert main(["download", "ali-vilab/i2vgen-xl"]) == 1
    error = capsys.readouterr().err
    assert "not in the local Hugging Face cache" in error and "./start_app.sh download ali-vilab/i2vgen-xl" in error
    assert "Traceback" not in error


def test_download_refuses_what_is_not_a_hub_model(capsys, tmp_path):
    assert main(["download", "tiny"]) == 2
    assert main(["download", str(tmp_path)]) == 2
    assert "nothing to download" in capsys.readouterr().err
