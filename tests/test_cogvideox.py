"""CogVideoX's own rules (its spec: 8N+1 frames and one fixed size; the names and folders routed to it; a folder
that is not the real model's shape; its hub files), exercised on ``tiny-cogvideox`` and the real model's spec. What
every family shares (loading through the
folder loader, generating, the frame-rule notice, the channel check, cancel, NaN retry, determinism) is in
``test_family_behaviour.py``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from i2v.backends import backend_for
from i2v.backends import spec_for
from i2v.backends.cogvideox.backend import COGVIDEOX_SPEC, CogVideoXBackend
from i2v.backends.cogvideox.tiny import TINY_COGVIDEOX_NAME, TinyCogVideoXBackend, build_tiny_pipeline
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.errors import BadInputError, ModelLoadError, ModelNotAvailableError
from i2v.planning.plan import ExecutionPlan
from i2v.engine.presets import load_presets

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)


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
    assert type(backend_for("someone/my-CogVideoX-I2V-finetune")) is CogVideoXBackend
    # A name that could as well be the text-to-video model is not guessed: --family names it.
    with pytest.raises(BadInputError, match="Cannot tell which model family"):
        backend_for("someone/my-COGVIDEOX-finetune")
    assert type(backend_for("someone/my-COGVIDEOX-finetune", "cogvideox-i2v")) is CogVideoXBackend
    assert type(backend_for("ali-vilab/i2vgen-xl")) is I2VGenXLBackend
    assert type(backend_for(str(saved_tiny))) is CogVideoXBackend  # from model_index.json's _class_name
    other = shutil.copytree(saved_tiny, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "CogVideoXPipeline"  # text-to-video: not ours
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="CogVideoXPipeline.*supported are"):
        spec_for(str(other))


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
        backend_for("someone/CogVideoX-not-here", "cogvideox-i2v").load(CPU_FP32)


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
