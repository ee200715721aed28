"""The real loading path (local folder / hub id), exercised on the tiny model saved with ``save_pretrained``.
Loading each family's folder with no key findings, and the channel check, are in test_family_behaviour.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from i2v.backends import backend_for
from i2v.backends import spec_for
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.backends.i2vgen_xl.tiny import build_tiny_pipeline, tiny_folder
from i2v.engine.engine import Engine
from i2v.errors import BadInputError, ModelLoadError, ModelNotAvailableError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import ExecutionPlan
from i2v.engine.request import GenerationRequest

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-i2vgen-xl"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_request(model: str, image: Path, **changes) -> GenerationRequest:
    # A folder gets I2VGen-XL's real limits (sides of 256 or more), also when it holds the tiny model.
    fields = dict(image=image, prompt="waves crashing, camera panning left", model=model, width=256, height=256,
                  frames=4, steps=2, seeds=(5,))
    fields.update(changes)
    return GenerationRequest(**fields)


def test_saved_folder_loads_and_matches_plain_diffusers(saved_tiny, photo_path, tmp_path):
    """Load through our folder loader, run through the engine, and compare with the same pipeline called the way
    the diffusers documentation shows: the engine adds no change to the pixels."""
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    result = engine.generate(run_request(str(saved_tiny), photo_path))
    record = result.videos[0].record
    assert record["model"]["source"] == "folder"
    assert record["model"]["model_id"] == str(saved_tiny)
    assert record["model"]["warnings"] == [] and result.model_warnings == []
    assert record["model"]["random_weights"] is False

    import hashlib

    pipe = build_tiny_pipeline()
    torch.manual_seed(5)
    fitted = engine.prepare(run_request(str(saved_tiny), photo_path)).image
    frames = pipe(
        prompt="waves crashing, camera panning left", image=fitted, height=256, width=256, target_fps=8,
        num_frames=4, num_inference_steps=2, guidance_scale=9.0, generator=torch.Generator("cpu").manual_seed(5),
        decode_chunk_size=record["plan"]["decode_chunk_size"], output_type="np",
    ).frames[0]
    plain = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    assert hashlib.sha256(plain.tobytes()).hexdigest() == record["video"]["frames_sha256"]


def test_tiny_builtin_is_built_once_and_loaded_from_its_folder(photo_path, tmp_path):
    folder = tiny_folder()
    assert (folder / "model_index.json").is_file()
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert tiny_folder() == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before
    assert not list(folder.parent.glob(".tiny-build-*"))


def test_missing_and_unexpected_weights_are_reported_with_every_result(saved_tiny, photo_path, tmp_path):
    broken = copy_model(saved_tiny, tmp_path / "broken")
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    removed = sorted(state)[0]
    del state[removed]
    state["leftover.from.another.model"] = torch.zeros(2)
    save_file(state, weights, metadata={"format": "pt"})

    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    for seed in (1, 2):  # every result, not only the first after loading
        result = engine.generate(run_request(str(broken), photo_path, seeds=(seed,)))
        codes = {w.code for w in result.model_warnings}
        assert {"model.missing_keys", "model.unexpected_keys"} <= codes
        missing = next(w for w in result.model_warnings if w.code == "model.missing_keys")
        assert "unet" in missing.message and removed in missing.message
        assert {w["code"] for w in result.videos[0].record["model_warnings"]} >= codes


def test_folders_that_are_not_i2vgen_xl_are_refused(saved_tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="model_index.json"):
        spec_for(str(empty))
    other = copy_model(saved_tiny, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="StableDiffusionPipeline"):
        spec_for(str(other))
    hostile = copy_model(saved_tiny, tmp_path / "hostile")
    index = json.loads((hostile / "model_index.json").read_text())
    index["unet"] = ["os", "system"]
    (hostile / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="component unet is a system"):
        I2VGenXLBackend(str(hostile)).load(CPU_FP32)


def test_uncached_hub_model_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = backend_for("someone/not-downloaded-i2v", "i2vgen-xl")
    with pytest.raises(ModelNotAvailableError, match=r"start_app\.sh download someone/not-downloaded-i2v"):
        backend.load(CPU_FP32)


def test_model_names_that_are_neither_folder_nor_hub_id_are_bad_input():
    for name in ("no such model", "../no-such-folder/x", "a/b/c"):
        with pytest.raises(BadInputError, match="neither"):
            spec_for(name)
    assert spec_for("ali-vilab/i2vgen-xl").family == "I2VGen-XL"  # no network needed to know its rules


def test_one_model_resident_at_a_time(saved_tiny, photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    engine.generate(run_request("tiny", photo_path))
    first = engine.backend
    engine.generate(run_request(str(saved_tiny), photo_path))
    assert engine.backend is not first and first._pipe is None
