"""The LTX-2 image-to-video backend (video with sound), exercised on ``tiny-ltx2`` (real diffusers classes, random
weights, saved with ``save_pretrained`` and loaded back through the same folder loader as the real model). Only the
family's own rules are here: the 8N+1 frame rule, sides multiple of 32, its 24 fps, the AAC track at the vocoder's
rate (and none with audio off), the load-time channel checks, LTX 0.9.x folders refused by name, hub-id routing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from i2v.backends import backend_for, spec_for
from i2v.backends.base import DenoiseInputs, WithAudio
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.backends.ltx2 import LTX2_SPEC, LTX2Backend
from i2v.backends.ltx2.backend import CONDITIONING_CRF, conditioning_image
from i2v.backends.ltx2.config import parameter_counts
from i2v.backends.ltx2.tiny import (TINY_LTX2_NAME, TINY_LTX2_SPEC, TinyLTX2Backend, build_tiny_components,
                                    build_tiny_pipeline)
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.engine.video import audio_streams, probe_mp4
from i2v.errors import BadInputError, ModelLoadError, NonFiniteOutputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.images import fit_to_size
from i2v.planning.plan import ExecutionPlan
from test_numeric_safety import nan_output

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
PROMPT = "waves crashing on rocks, camera panning slowly left, the roar of the surf"


def make_request(image: Path, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt=PROMPT, model=TINY_LTX2_NAME, frames=9, steps=2, seeds=(7,))
    fields.update(changes)
    return GenerationRequest(**fields)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-ltx2-folder"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


def _save(components: dict, folder: Path) -> Path:
    from i2v.backends.ltx2.loading import ltx2_module

    ltx2_module().LTX2ImageToVideoPipeline(**components).save_pretrained(folder)
    return folder


def _copy_with_index(saved: Path, target: Path, **changes) -> Path:
    folder = shutil.copytree(saved, target)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(changes)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI generation of 16 frames (snapped to 17), with sound: (mp4 path, its record)."""
    from conftest import photo_like

    folder = tmp_path_factory.mktemp("cli")
    image = folder / "input.png"
    photo_like(192, 128).save(image)
    out = folder / "ltx2.mp4"
    status = main(["generate", "--model", TINY_LTX2_NAME, "--image", str(image), "--prompt", PROMPT,
                   "--frames", "16", "--steps", "2", "--seed", "3", "--output", str(out), "--json"])
    assert status == 0
    return out, json.loads(out.with_suffix(".json").read_text())


# -- the spec and the model name ---------------------------------------------------------------------------
def test_spec_declares_the_real_models_rules():
    spec = spec_for("Lightricks/LTX-2")
    assert spec is LTX2_SPEC and spec.has_audio
    assert (spec.frame_rule.step, spec.frame_rule.offset, spec.size_multiple, spec.latent_channels) == (8, 1, 32, 128)
    assert (spec.default_frames, spec.default_steps, spec.default_guidance, spec.default_fps) == (121, 30, 3.0, 24)
    assert spec.preferred_dtypes == ("bfloat16", "float32")  # never float16
    frames, notices = spec.snap_frames(16)
    assert frames == 17 and notices[0].code == "frames.snapped" and "8N+1" in notices[0].message
    assert spec.snap_frames(120)[0] == 121 and spec.snap_frames(121) == (121, [])
    size, notices = spec.snap_size(780, 500)
    assert size == (768, 512) and notices[0].code == "size.snapped" and "32" in notices[0].message
    assert spec.size_for_tier(512, 1.5)[0] == (640, 416)


def test_hub_ids_naming_ltx2_are_routed_here(saved_tiny):
    for model in ("Lightricks/LTX-2", "lightricks/ltx-2@main", "someone/ltx2-i2v-finetune", "someone/LTX-2.3-merge"):
        assert type(backend_for(model)) is LTX2Backend, model
    # LTX-Video 0.9.x is another pipeline, and "ltx-23" / "xltx2" are not LTX-2's name: not guessed, refused.
    for model in ("Lightricks/LTX-Video", "someone/ltx-23-model", "someone/xltx2"):
        with pytest.raises(BadInputError, match="Cannot tell which model family"):
            backend_for(model)
    assert type(backend_for("ali-vilab/i2vgen-xl")) is I2VGenXLBackend
    assert type(backend_for(str(saved_tiny))) is LTX2Backend  # from model_index.json's _class_name
    assert isinstance(backend_for(TINY_LTX2_NAME), TinyLTX2Backend)


def test_parameter_counts_of_the_real_architecture():
    """The full-size configuration (config.py) on the meta device; the spec's memory profile uses these counts."""
    counts = parameter_counts()
    assert counts["transformer"] == 18_876_174_592  # "19B"
    memory = LTX2_SPEC.memory
    assert memory.transformer_params == counts["transformer"] and memory.vae_params == counts["vae"]
    assert (memory.text_encoder_params, memory.connector_params) == (counts["text_encoder"], counts["connectors"])
    assert memory.audio_params == counts["audio_vae"] + counts["vocoder"]


def test_tiny_memory_profile_counts_equal_the_build():
    built = build_tiny_components()
    count = {name: sum(p.numel() for p in built[name].parameters())
             for name in ("transformer", "vae", "text_encoder", "connectors", "audio_vae", "vocoder")}
    memory = TINY_LTX2_SPEC.memory
    assert (memory.transformer_params, memory.vae_params) == (count["transformer"], count["vae"])
    assert (memory.text_encoder_params, memory.connector_params) == (count["text_encoder"], count["connectors"])
    assert memory.audio_params == count["audio_vae"] + count["vocoder"]


# -- loading -----------------------------------------------------------------------------------------------
def test_saved_folder_loads_through_the_folder_loader_without_findings(saved_tiny):
    backend = LTX2Backend(str(saved_tiny))
    backend.spec = TINY_LTX2_SPEC  # a folder gets the real model's spec; this one is the tiny build
    report = backend.load(CPU_FP32)
    assert report.source == "folder" and report.warnings == ()
    assert report.components["vocoder"] == "LTX2Vocoder" and report.components["connectors"] == "LTX2TextConnectors"
    assert report.components["audio_vae"] == "AutoencoderKLLTX2Audio"
    built = build_tiny_pipeline()
    for name in ("transformer", "vae", "audio_vae", "vocoder", "connectors", "text_encoder"):
        loaded = getattr(backend.pipeline, name).state_dict()
        for key, value in getattr(built, name).state_dict().items():
            assert torch.equal(loaded[key], value), f"{name}.{key} changed in the round trip"


@pytest.mark.parametrize("shape, message", [
    ({"transformer_in_channels": 16}, "VAE latent channels × transformer patch is 8 but transformer in_channels is 16"),
    ({"vocoder_in_channels": 48}, "audio VAE output channels × mel bins is 32 but vocoder in_channels is 48"),
])
def test_channel_mismatch_is_refused_at_load_naming_both_numbers(tmp_path, shape, message):
    folder = _save(build_tiny_components(**shape), tmp_path / "broken")
    backend = LTX2Backend(str(folder))
    backend.spec = TINY_LTX2_SPEC
    with pytest.raises(ModelLoadError, match=message.replace("×", ".")):
        backend.load(CPU_FP32)


def test_a_vae_of_other_latent_channels_than_the_spec_is_refused(saved_tiny):
    backend = LTX2Backend(str(saved_tiny))  # the real model's spec: 128 latent channels, the tiny has 8
    with pytest.raises(ModelLoadError, match="8 latent channels; LTX-2 I2V expects 128"):
        backend.load(CPU_FP32)


@pytest.mark.parametrize("pipeline", ["LTXImageToVideoPipeline", "LTXConditionPipeline"])
def test_an_ltx_0_9_folder_is_refused_by_name(saved_tiny, tmp_path, pipeline):
    folder = _copy_with_index(saved_tiny, tmp_path / "ltx-video", _class_name=pipeline)
    with pytest.raises(ModelLoadError, match=f"{pipeline}.*LTX-Video 0.9.x.*LTX2ImageToVideoPipeline"):
        LTX2Backend(str(folder)).load(CPU_FP32)
    with pytest.raises(ModelLoadError, match=pipeline):  # by folder: the registry refuses it before any load
        backend_for(str(folder))


def test_a_wrong_checkpoint_gives_one_clear_error_and_leaves_no_file(saved_tiny, photo_path, tmp_path):
    folder = _copy_with_index(saved_tiny, tmp_path / "ltx-video", _class_name="LTXImageToVideoPipeline")
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    with pytest.raises(ModelLoadError, match="LTXImageToVideoPipeline"):
        engine.generate(make_request(photo_path, model=str(folder)))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


# -- generating ----------------------------------------------------------------------------------------------
def test_cli_makes_17_frames_for_16_at_24_fps_with_a_notice(cli_run):
    out, record = cli_run
    probe = probe_mp4(out)
    assert probe["frames"] == 17 and record["video"]["frames"] == 17 and probe["fps"] == 24
    # The picture is 192×128 (3:2): the balanced tier's "64p" area at that aspect, sides multiple of 32.
    assert probe["size"] == (64, 64) and all(side % 32 == 0 for side in probe["size"])
    snapped = [n for n in record["notices"] if n["code"] == "frames.snapped"]
    assert snapped and "16 frames changed to 17" in snapped[0]["message"] and "8N+1" in snapped[0]["message"]
    assert record["model"]["components"]["vocoder"] == "LTX2Vocoder"
    assert [w["code"] for w in record["model_warnings"]] == ["model.random_weights"]  # no weight-key findings


def test_the_mp4_carries_an_aac_track_at_the_vocoders_rate_and_the_record_says_so(cli_run):
    out, record = cli_run
    streams = audio_streams(out)
    assert len(streams) == 1 and streams[0].startswith("aac") and "24000 Hz" in streams[0], streams
    assert "stereo" in streams[0]
    audio = record["audio"]
    assert (audio["codec"], audio["sample_rate"], audio["channels"]) == ("aac", 24000, 2)
    assert abs(audio["seconds"] - 17 / 24) < 0.05  # the clip's length
    assert record["params"]["audio"] is True and "--no-audio" not in record["reproduce"]


def test_audio_off_writes_no_audio_stream(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    video = engine.generate(make_request(photo_path, audio=False)).videos[0]
    assert audio_streams(video.path) == []
    assert video.record["audio"] is None and video.record["params"]["audio"] is False
    assert video.record["reproduce"].endswith("--no-audio")


def test_audio_must_be_a_real_bool(photo_path):
    engine = Engine(gpu_info=FixedGpuInfo.none())
    with pytest.raises(BadInputError, match="audio must be true or false"):
        engine.prepare(make_request(photo_path, audio="no"))


def test_explicit_sides_snap_to_multiples_of_32(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    result = engine.generate(make_request(photo_path, width=100, height=70))
    assert probe_mp4(result.videos[0].path)["size"] == (96, 64)
    assert any(n.code == "size.snapped" and "32" in n.message for n in result.notices)


def test_backend_output_equals_the_pipeline_called_as_documented(photo_path):
    """Our denoise (latents out) + decode give the frames and the sound the pipeline itself returns."""
    from PIL import Image

    backend = TinyLTX2Backend()
    backend.load(CPU_FP32)
    image = fit_to_size(Image.open(photo_path).convert("RGB"), 96, 64)
    inputs = DenoiseInputs(image=image, prompt="leaves falling", negative_prompt="", width=96, height=64,
                           frames=9, steps=2, guidance=3.0, fps=24, seed=11)
    ours = backend.decode(backend.denoise(inputs, lambda *_: None), CPU_FP32)
    assert isinstance(ours, WithAudio) and ours.sample_rate == 24000
    # The pipeline re-compresses the picture with PyAV (not installed here); we do it with ffmpeg, before the call.
    video, audio = backend.pipeline(image=conditioning_image(image, CONDITIONING_CRF), image_crf=0, prompt="leaves falling", height=64, width=96,
                                    num_frames=9, num_inference_steps=2, guidance_scale=3.0, frame_rate=24.0,
                                    output_type="pt", return_dict=False, use_cross_timestep=False,
                                    spatio_temporal_guidance_blocks=[0], max_sequence_length=1024,
                                    generator=torch.Generator("cpu").manual_seed(11))
    assert ours.video.shape == (1, 3, 9, 64, 96)
    assert torch.allclose((ours.video / 2 + 0.5).clamp(0, 1), video.permute(0, 2, 1, 3, 4), atol=1e-6)
    assert torch.equal(ours.audio, audio)


def test_nan_in_the_sound_is_never_written(photo_path, tmp_path):
    """NaN samples would be written as silence or clicks: the decode fails like a black video does, and with nothing
    safer than float32 to retry in, the job fails and writes nothing."""
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    request = make_request(photo_path, dtype="float32")
    engine.generate(request)
    written = sorted((tmp_path / "out").rglob("*"))
    with nan_output(engine.backend.pipeline.vocoder.conv_out), pytest.raises(NonFiniteOutputError, match="audio"):
        engine.generate(request)
    assert sorted((tmp_path / "out").rglob("*")) == written  # no silent video, no partial file


def test_vram_doc_table_matches_the_planner():
    from i2v.engine.presets import default_presets, presets_for_model
    from i2v.planning.planner import decision_table

    spec = LTX2_SPEC
    table = decision_table(spec, presets_for_model(default_presets(), spec.preset_key), (12, 16, 24, 40, 48, 80),
                           aspect=spec.native_size[0] / spec.native_size[1])
    doc = (Path(__file__).resolve().parent.parent / "docs" / "VRAM.md").read_text(encoding="utf-8")
    assert "estimated, not traced" in doc and table in doc, f"docs/VRAM.md is out of date for LTX-2:\n{table}"
