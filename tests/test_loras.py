"""LoRAs on the tiny models, through the engine as a user runs them: a LoRA saved the way trainers save it changes
the video, its strength matters, the record names it (file, sha256, strength) and the reproduce line passes it on,
switching it off gives back the base model's exact frames without reloading the model, and each bad LoRA gets one
clear message and leaves no file."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from i2v.backends.cogvideox.tiny import TINY_COGVIDEOX_NAME
from i2v.backends.i2vgen_xl.tiny import TINY_NAME
from i2v.backends.ltx2.tiny import TINY_LTX2_NAME
from i2v.backends.wan.tiny import TINY_WAN_NAME
from i2v.backends.wan22.tiny import TINY_A14B_NAME
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.errors import BadInputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.loras.choice import LoraChoice, lora_choices, parse_lora

from lora_files import diffusers_lora, unet_lora, wan_original_lora

SMALL = {"frames": 5, "steps": 2, "resolution": 64}


@pytest.fixture(scope="module")
def picture(shared_photo_path) -> Path:
    return shared_photo_path


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path_factory.mktemp("lora-outputs"))


@pytest.fixture(scope="module")
def wan_loras(engine, picture, tmp_path_factory) -> dict[str, Path]:
    """LoRAs for tiny-wan, written against its loaded transformer (so the base run comes first)."""
    engine.generate(_request(picture, TINY_WAN_NAME, ()))
    transformer = engine._backend.pipeline.transformer
    folder = tmp_path_factory.mktemp("loras")
    return {"style": wan_original_lora(transformer, folder / "style.safetensors"),
            "deeper": wan_original_lora(transformer, folder / "deeper.safetensors", seed=1, extra_blocks=2),
            "unet": unet_lora(folder / "sd15_detail.safetensors")}


def _request(picture, model, loras, **changes) -> GenerationRequest:
    return GenerationRequest(image=str(picture), prompt="a boat drifting slowly to the left", model=model,
                             seeds=(7,), loras=tuple(loras), **{**SMALL, **changes})


def _run(engine, picture, model, loras=(), **changes):
    video = engine.generate(_request(picture, model, loras, **changes)).videos[0]
    return video.record


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and p.name != "jobs.sqlite3"}


def test_a_lora_changes_the_video_is_recorded_and_switching_it_off_gives_the_base_frames(engine, picture, wan_loras):
    base = _run(engine, picture, TINY_WAN_NAME)
    pipeline = engine._backend.pipeline
    styled = _run(engine, picture, TINY_WAN_NAME, [LoraChoice(str(wan_loras["style"]), 1.0)])
    half = _run(engine, picture, TINY_WAN_NAME, [LoraChoice(str(wan_loras["style"]), 0.5)])
    off = _run(engine, picture, TINY_WAN_NAME)

    assert styled["video"]["frames_sha256"] != base["video"]["frames_sha256"]
    assert half["video"]["frames_sha256"] not in (base["video"]["frames_sha256"], styled["video"]["frames_sha256"])
    assert off["video"]["frames_sha256"] == base["video"]["frames_sha256"]  # exactly the base model again
    assert engine._backend.pipeline is pipeline  # no reload for a LoRA change
    (lora,) = styled["loras"]
    import hashlib
    assert lora["file"] == "style.safetensors" and lora["strength"] == 1.0
    assert lora["sha256"] == hashlib.sha256(wan_loras["style"].read_bytes()).hexdigest()
    assert lora["tensors_skipped"] == 0 and lora["tensors_applied"] > 0
    assert f"--lora {wan_loras['style']}:1" in styled["reproduce"]
    assert off["loras"] == [] and "--lora" not in off["reproduce"]


def test_a_lora_that_fits_partly_runs_with_a_warning_giving_the_counts(engine, picture, wan_loras):
    result = engine.generate(_request(picture, TINY_WAN_NAME, [LoraChoice(str(wan_loras["deeper"]))]))
    (warning,) = [w for w in result.warnings if w.code == "lora.partial"]
    record = result.videos[0].record
    applied, skipped = record["loras"][0]["tensors_applied"], record["loras"][0]["tensors_skipped"]
    assert skipped > 0 and applied > 0
    assert f"{applied} of {applied + skipped} tensors fit" in warning.message and "deeper.safetensors" in warning.message
    assert "lora.partial" in {w["code"] for w in record["warnings"]}


def test_a_lora_for_another_model_is_refused_before_the_run_naming_what_it_looks_like(engine, picture, wan_loras):
    before = _files(engine.output_dir)
    with pytest.raises(BadInputError, match=r"does not fit Wan.*0 of \d+ tensors.*UNet image model"):
        engine.generate(_request(picture, TINY_WAN_NAME, [LoraChoice(str(wan_loras["unet"]))]))
    assert _files(engine.output_dir) == before


def test_pickle_files_missing_files_and_fake_safetensors_each_get_one_line(engine, picture, tmp_path, monkeypatch):
    ckpt = tmp_path / "style.ckpt"
    ckpt.write_bytes(pickle.dumps({"not": "loaded"}))
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(pickle.dumps({"not": "loaded"}))
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path / "lora-folder"))
    cases = {str(ckpt): r"pickle file \(\.ckpt\).*refused.*\.safetensors version",
             "nowhere.safetensors": r"not found: not a file, not in the LoRA folder .*lora-folder",
             str(renamed): r"not a readable safetensors file"}
    for source, message in cases.items():
        with pytest.raises(BadInputError, match=message) as caught:
            engine.prepare(_request(picture, TINY_WAN_NAME, [LoraChoice(source)]))
        assert "\n" not in str(caught.value)


def test_a_model_without_lora_loading_refuses_loras_naming_the_models_that_take_them(engine, picture, wan_loras):
    with pytest.raises(BadInputError, match=rf"does not take LoRAs.*{TINY_WAN_NAME}"):
        engine.prepare(_request(picture, TINY_NAME, [LoraChoice(str(wan_loras["style"]))]))


def test_a_lora_is_found_by_name_in_the_lora_folder(engine, picture, wan_loras, tmp_path, monkeypatch):
    folder = tmp_path / "loras"
    monkeypatch.setenv("I2V_LORA_DIR", str(folder))
    (folder / "styles").mkdir(parents=True)
    (folder / "styles" / "mine.safetensors").write_bytes(wan_loras["style"].read_bytes())
    (tmp_path / "elsewhere.safetensors").write_bytes(wan_loras["style"].read_bytes())
    from i2v.loras.files import available_loras

    assert available_loras() == ["styles/mine.safetensors"]
    job = engine.prepare(_request(picture, TINY_WAN_NAME, [LoraChoice("styles/mine", 0.8)]))
    assert job.lora_files[0].path == folder / "styles" / "mine.safetensors"
    with pytest.raises(BadInputError, match="not found"):  # a name stays inside the folder
        engine.prepare(_request(picture, TINY_WAN_NAME, [LoraChoice("../elsewhere")]))


@pytest.mark.parametrize("model, loaded_into", [(TINY_COGVIDEOX_NAME, ["transformer"]), (TINY_LTX2_NAME, ["transformer"]),
                                               (TINY_A14B_NAME, ["transformer", "transformer_2"])])
def test_loras_in_diffusers_names_apply_to_the_other_transformer_families(engine, picture, tmp_path, model,
                                                                          loaded_into):
    shape = {"frames": 9, "resolution": None}  # 9 frames fits every rule; each tiny model's own size
    base = _run(engine, picture, model, **shape)
    lora = diffusers_lora(engine._backend.pipeline.transformer, tmp_path / f"{model}.safetensors")
    styled = _run(engine, picture, model, [LoraChoice(str(lora))], **shape)
    assert styled["video"]["frames_sha256"] != base["video"]["frames_sha256"]
    assert styled["loras"][0]["loaded_into"] == loaded_into  # Wan 2.2 A14B: both the high- and the low-noise expert
    assert _run(engine, picture, model, **shape)["video"]["frames_sha256"] == base["video"]["frames_sha256"]


def test_the_lora_argument_keeps_colons_of_paths_and_reads_the_strength_after_the_last():
    assert parse_lora("style.safetensors") == LoraChoice("style.safetensors", 1.0)
    assert parse_lora("style.safetensors:0.8") == LoraChoice("style.safetensors", 0.8)
    assert parse_lora("C:/loras/x.safetensors") == LoraChoice("C:/loras/x.safetensors", 1.0)
    assert parse_lora("owner/repo/x.safetensors:-0.5") == LoraChoice("owner/repo/x.safetensors", -0.5)
    assert parse_lora("high.safetensors:0.7@high") == LoraChoice("high.safetensors", 0.7, "high")
    assert parse_lora("owner/repo@v2/low.safetensors@low") == LoraChoice("owner/repo@v2/low.safetensors", 1.0, "low")
    with pytest.raises(BadInputError, match=r"strength .* is 9: use -4..4"):
        parse_lora("x.safetensors:9")
    assert lora_choices([{"file": "a.safetensors", "strength": 0.5}, ["b.safetensors", 2], "c.safetensors:1.5"]) == (
        LoraChoice("a.safetensors", 0.5), LoraChoice("b.safetensors", 2.0), LoraChoice("c.safetensors", 1.5))
    with pytest.raises(BadInputError, match="given twice"):
        lora_choices(["a.safetensors", "a.safetensors:0.5"])


def test_the_cli_takes_loras_and_the_record_names_them(picture, wan_loras, tmp_path, capsys):
    from i2v.cli import main

    code = main(["generate", "--image", str(picture), "--prompt", "a boat drifting slowly to the left",
                 "--model", TINY_WAN_NAME, "--frames", "5", "--steps", "2", "--resolution", "64", "--seed", "7",
                 "--lora", f"{wan_loras['style']}:0.5", "--output-dir", str(tmp_path), "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(lora["file"], lora["strength"]) for lora in record["loras"]] == [("style.safetensors", 0.5)]
    code = main(["generate", "--image", str(picture), "--prompt", "a boat", "--model", TINY_WAN_NAME,
                 "--lora", str(tmp_path / "gone.pt"), "--output-dir", str(tmp_path)])
    assert code != 0 and "pickle file" in capsys.readouterr().err


# -- the turbo tier: a step-distilled LoRA, 4 steps, no guidance pass ------------------------------------------------
def test_turbo_runs_four_steps_with_its_lora_and_refuses_with_the_command_without_it(engine, picture, wan_loras,
                                                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path))
    turbo = {"preset": "turbo", "frames": None, "steps": None, "resolution": None}
    with pytest.raises(BadInputError, match=r"turbo tier of Wan.*needs the step-distilled LoRA "
                                            r"tiny-wan-turbo\.safetensors.*put tiny-wan-turbo\.safetensors in the "
                                            r"LoRA folder"):
        engine.prepare(_request(picture, TINY_WAN_NAME, (), **turbo))
    real = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"  # known by its name: nothing is loaded to plan it
    with pytest.raises(BadInputError, match=r"`hf download lightx2v/Wan2.1-Distill-Loras "
                                            r"wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors --local-dir "):
        engine.prepare(_request(picture, real, (), **turbo))

    (tmp_path / "tiny-wan-turbo.safetensors").write_bytes(wan_loras["style"].read_bytes())
    steps_seen = []
    result = engine.generate(_request(picture, TINY_WAN_NAME, (), **turbo),
                             on_progress=lambda event: steps_seen.append(event.total_steps) if event.stage == "denoise"
                             else None)
    record = result.videos[0].record
    assert (record["params"]["steps"], record["params"]["guidance"], record["params"]["flow_shift"]) == (4, 1.0, 5.0)
    assert set(steps_seen) == {4}
    assert [lora["file"] for lora in record["loras"]] == ["tiny-wan-turbo.safetensors"]
    assert "--preset turbo" in record["reproduce"]


def test_turbo_is_not_offered_to_a_model_without_a_distilled_lora(engine, picture):
    with pytest.raises(BadInputError, match="turbo tier is not offered for this model"):
        engine.prepare(_request(picture, TINY_NAME, (), preset="turbo", frames=None, steps=None, resolution=None))


def test_a14b_takes_one_lora_per_expert_and_other_models_refuse_an_expert(engine, picture, tmp_path):
    shape = {"frames": 9, "resolution": None}
    base = _run(engine, picture, TINY_A14B_NAME, **shape)
    pipe = engine._backend.pipeline
    high = diffusers_lora(pipe.transformer, tmp_path / "high_noise.safetensors", seed=1)
    low = diffusers_lora(pipe.transformer_2, tmp_path / "low_noise.safetensors", seed=2)
    both = _run(engine, picture, TINY_A14B_NAME, [parse_lora(f"{high}:1@high"), parse_lora(f"{low}:1@low")], **shape)
    only_high = _run(engine, picture, TINY_A14B_NAME, [parse_lora(f"{high}@high")], **shape)

    assert [(r["file"], r["expert"], r["loaded_into"]) for r in both["loras"]] == [
        ("high_noise.safetensors", "high", ["transformer"]), ("low_noise.safetensors", "low", ["transformer_2"])]
    hashes = {base["video"]["frames_sha256"], both["video"]["frames_sha256"], only_high["video"]["frames_sha256"]}
    assert len(hashes) == 3  # each expert's LoRA changes the video on its own
    assert f"--lora {high}:1@high" in both["reproduce"] and f"--lora {low}:1@low" in both["reproduce"]
    assert _run(engine, picture, TINY_A14B_NAME, **shape)["video"]["frames_sha256"] == base["video"]["frames_sha256"]
    with pytest.raises(BadInputError, match=r"high-noise expert, but Wan .* has one transformer: leave '@high' out"):
        engine.prepare(_request(picture, TINY_WAN_NAME, [parse_lora(f"{high}@high")]))


def test_a14b_turbo_needs_one_distilled_lora_per_expert(engine, picture, tmp_path, monkeypatch):
    monkeypatch.setenv("I2V_LORA_DIR", str(tmp_path))
    turbo = {"preset": "turbo", "frames": None, "steps": None, "resolution": None}
    real = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
    with pytest.raises(BadInputError) as refused:
        engine.prepare(_request(picture, real, (), **turbo))
    message = str(refused.value)
    assert message.count("`hf download Kijai/WanVideo_comfy LoRAs/Wan22_Lightx2v/") == 2  # one command per expert
    assert "HIGH_lightx2v_4step" in message and "LOW_lightx2v_4step" in message

    _run(engine, picture, TINY_A14B_NAME, frames=9, resolution=None)  # load the tiny experts to write LoRAs for
    pipe = engine._backend.pipeline
    diffusers_lora(pipe.transformer, tmp_path / "tiny-wan22-a14b-turbo-high.safetensors", seed=3)
    diffusers_lora(pipe.transformer_2, tmp_path / "tiny-wan22-a14b-turbo-low.safetensors", seed=4)
    record = _run(engine, picture, TINY_A14B_NAME, **turbo)
    assert (record["params"]["steps"], record["params"]["guidance"]) == (4, 1.0)
    assert [(r["expert"], r["loaded_into"]) for r in record["loras"]] == [("high", ["transformer"]),
                                                                         ("low", ["transformer_2"])]


def test_the_planner_counts_the_loras_weights(engine, picture, wan_loras):
    from i2v.loras.files import lora_parameter_count

    plain = engine.prepare(_request(picture, TINY_WAN_NAME, ()))
    styled = engine.prepare(_request(picture, TINY_WAN_NAME, [LoraChoice(str(wan_loras["style"]))]))
    assert styled.spec.memory.lora_params == lora_parameter_count(wan_loras["style"]) > 0
    assert styled.spec.memory.weights("float32")["transformer"] == (
        plain.spec.memory.weights("float32")["transformer"] + 4 * styled.spec.memory.lora_params)
