"""The CogVideoX image-to-video backend, exercised on ``tiny-cogvideox`` (real diffusers classes, random weights,
saved with ``save_pretrained`` and loaded back through the same folder loader as the real model)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from i2v.backends import backend_for
from i2v.backends import spec_for
from i2v.backends.cogvideox.backend import COGVIDEOX_SPEC, CogVideoXBackend
from i2v.backends.cogvideox.tiny import (
    TINY_COGVIDEOX_NAME,
    TINY_COGVIDEOX_SPEC,
    TinyCogVideoXBackend,
    build_tiny_pipeline,
    tiny_cogvideox_folder,
)
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.errors import ModelLoadError, ModelNotAvailableError, NonFiniteOutputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import ExecutionPlan
from i2v.engine.presets import load_presets
from i2v.engine.request import GenerationRequest
from i2v.engine.video import probe_mp4
from test_numeric_safety import nan_output

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
TINY_ARGS = ["--model", TINY_COGVIDEOX_NAME, "--frames", "16", "--steps", "2", "--fps", "8"]


def make_request(image: Path, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="waves crashing, camera panning left", model=TINY_COGVIDEOX_NAME,
                  frames=9, steps=2, seeds=(7,))
    fields.update(changes)
    return GenerationRequest(**fields)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-cogvideox-folder"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


# -- the spec and the model name ---------------------------------------------------------------------------
def test_spec_declares_the_real_models_shape_rules():
    spec = spec_for("THUDM/CogVideoX-5b-I2V")
    assert spec is COGVIDEOX_SPEC
    assert (spec.frame_rule.step, spec.frame_rule.offset, spec.default_frames, spec.max_frames) == (8, 1, 49, 49)
    assert spec.latent_channels == 16 and spec.native_size == (720, 480) and spec.fixed_size
    assert spec.preferred_dtypes[0] == "bfloat16" and "float16" not in spec.preferred_dtypes
    assert (spec.default_guidance, spec.default_steps, spec.default_fps) == (6.0, 50, 8)
    assert spec.snap_frames(16)[0] == 17 and spec.snap_frames(48)[0] == 49
    # Every preset's tier resolves to the one size the model generates at, with a notice, never a refusal.
    for preset in load_presets().values():
        (size, notices) = spec.size_for_tier(preset.resolution, 1.5)
        assert size == (720, 480)
        assert [n.code for n in notices] == ["size.fixed"]
    size, notices = spec.size_for_tier(480, 1.0)
    assert size == (720, 480) and [n.code for n in notices] == ["size.aspect_cropped"]
    size, notices = spec.snap_size(512, 512)
    assert size == (720, 480) and "720×480 only" in notices[0].message


def test_model_names_pick_the_backend(saved_tiny, tmp_path):
    assert isinstance(backend_for(TINY_COGVIDEOX_NAME), TinyCogVideoXBackend)
    assert type(backend_for("THUDM/CogVideoX-5b-I2V")) is CogVideoXBackend
    assert type(backend_for("someone/my-COGVIDEOX-finetune")) is CogVideoXBackend
    assert type(backend_for("ali-vilab/i2vgen-xl")) is I2VGenXLBackend
    assert type(backend_for(str(saved_tiny))) is CogVideoXBackend  # from model_index.json's _class_name
    other = shutil.copytree(saved_tiny, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "CogVideoXPipeline"  # text-to-video: not ours
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="CogVideoXPipeline.*supported are"):
        spec_for(str(other))


# -- generating --------------------------------------------------------------------------------------------
def test_cli_generates_17_frames_for_16_with_a_notice(photo_path, tmp_path, capsys):
    out = tmp_path / "cog.mp4"
    status = main(["generate", "--image", str(photo_path), "--prompt", "a sailboat drifting slowly to the left",
                   *TINY_ARGS, "--seed", "3", "--output", str(out), "--json"])
    assert status == 0, capsys.readouterr().err
    probe = probe_mp4(out)
    assert probe["frames"] == 17 and probe["size"] == (96, 64)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["video"]["frames"] == 17 and sidecar["params"]["frames"] == 17
    snapped = [n for n in sidecar["notices"] if n["code"] == "frames.snapped"]
    assert snapped and "16 frames changed to 17" in snapped[0]["message"] and "8N+1" in snapped[0]["message"]
    assert sidecar["model"]["source"] == "built-in" and sidecar["model"]["random_weights"] is True
    assert sidecar["model"]["components"]["transformer"] == "CogVideoXTransformer3DModel"
    assert any(w["code"] == "model.random_weights" for w in sidecar["model_warnings"])


def test_saved_folder_round_trips_through_the_folder_loader(saved_tiny, photo_path, tmp_path):
    """The folder loader gives back the weights that were saved, and the engine's output through it equals the
    output through the built-in tiny model (which is the same build, saved into the cache)."""
    backend = CogVideoXBackend(str(saved_tiny))
    backend.spec = TINY_COGVIDEOX_SPEC  # a folder gets the real model's 720×480; this one is the tiny build
    report = backend.load(CPU_FP32)
    assert report.source == "folder" and report.warnings == ()
    built = build_tiny_pipeline()
    for name in ("transformer", "vae", "text_encoder"):
        loaded = getattr(backend.pipeline, name).state_dict()
        for key, value in getattr(built, name).state_dict().items():
            # Cast as the loader casts (the positional-embedding buffer is built in float64).
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), f"{name}.{key} changed in the round trip"
    assert backend.pipeline.tokenizer("waves").input_ids == built.tokenizer("waves").input_ids
    assert (tiny_cogvideox_folder() / "model_index.json").is_file()


def test_a_folder_whose_shape_differs_from_the_spec_is_refused_at_load(saved_tiny, tmp_path):
    # A folder gets the real model's spec (16 latent channels, 720×480); the tiny build has neither.
    with pytest.raises(ModelLoadError, match=r"VAE has 4 latent channels.*CogVideoX-I2V expects 16"):
        backend_for(str(saved_tiny)).load(CPU_FP32)
    wide = tmp_path / "sixteen-channels"
    build_tiny_pipeline(latent_channels=16).save_pretrained(wide)
    with pytest.raises(ModelLoadError, match=r"only generates at 96×64.*declared at 720×480"):
        backend_for(str(wide)).load(CPU_FP32)


def test_uncached_cogvideox_hub_model_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=r"start_app\.sh download someone/CogVideoX-not-here"):
        backend_for("someone/CogVideoX-not-here").load(CPU_FP32)


def test_transformer_must_take_twice_the_vae_latent_channels(tmp_path):
    broken = tmp_path / "mismatched"
    build_tiny_pipeline(transformer_in_channels=6).save_pretrained(broken)
    backend = CogVideoXBackend(str(broken))
    with pytest.raises(ModelLoadError, match=r"VAE has 4 latent channels.*2 × 4 = 8 input channels.*takes 6"):
        backend.load(CPU_FP32)


def test_engine_run_is_reproducible_and_reports_progress(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    events = []
    first = engine.generate(make_request(photo_path), on_progress=events.append)
    second = engine.generate(make_request(photo_path))
    digest = [r.videos[0].record["video"]["frames_sha256"] for r in (first, second)]
    assert digest[0] == digest[1]
    assert [(e.step, e.total_steps) for e in events if e.stage == "denoise"] == [(1, 2), (2, 2)]
    assert first.videos[0].record["video"]["frames"] == 9


def test_nan_in_bf16_transformer_is_retried_in_fp32(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    engine.load(make_request(photo_path, dtype="bfloat16"))
    transformer = engine.backend.pipeline.transformer
    with nan_output(transformer, only_dtype=torch.bfloat16) as calls:
        result = engine.generate(make_request(photo_path, dtype="bfloat16"))
    assert calls["n"] == 1  # stopped at the first bad step
    record = result.videos[0].record
    assert record["plan"]["dtype_used"] == "float32"
    assert any(n["code"] == "numerics.run_retried" for n in record["notices"])
    assert engine.backend.pipeline.transformer.dtype == torch.bfloat16  # back to the planned precision
    with nan_output(engine.backend.pipeline.vae.decoder), pytest.raises(NonFiniteOutputError):
        engine.generate(make_request(photo_path, dtype="bfloat16"))


@pytest.mark.parametrize("model", ["tiny", "tiny-cogvideox"])
def test_built_in_models_have_nothing_to_download(model, capsys):
    from i2v import cli

    assert cli.main(["download", model]) == 2
    assert "is not a hub model" in capsys.readouterr().err


def test_a_cogvideox_download_fetches_its_own_files(monkeypatch, tmp_path, capsys):
    """Split weights and the T5 tokenizer model must be in the allow list, or the cache is unusable offline."""
    import huggingface_hub

    from i2v import cli

    asked = {}

    def fake_snapshot(repo_id, revision=None, allow_patterns=None):
        asked.update(repo=repo_id, patterns=allow_patterns)
        folder = tmp_path / "snapshots" / "0123abc"
        folder.mkdir(parents=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert cli.main(["download", "THUDM/CogVideoX-5b-I2V"]) == 0
    assert asked["repo"] == "THUDM/CogVideoX-5b-I2V"
    patterns = asked["patterns"]
    import fnmatch

    for name in ("transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
                 "text_encoder/model-00001-of-00002.safetensors", "tokenizer/spiece.model"):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
    assert "commit 0123abc" in capsys.readouterr().out
