"""The Wan 2.1 image-to-video backend, exercised on ``tiny-wan`` (real diffusers classes, random weights, saved with
``save_pretrained`` and loaded back through the same folder loader as the real model)."""
from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch

from i2v.backends import backend_for
from i2v.backends import spec_for
from i2v.backends.base import DenoiseInputs
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.backends.wan.backend import WAN_720P_SPEC, WAN_SPEC, Wan720PBackend, WanBackend, flow_shift_for
from i2v.backends.wan.config import parameter_counts
from i2v.backends.wan.tiny import (
    TINY_WAN_NAME,
    TINY_WAN_SPEC,
    TinyWanBackend,
    build_tiny_pipeline,
    tiny_wan_folder,
)
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.errors import BadInputError, ModelLoadError, ModelNotAvailableError, NonFiniteOutputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.images import fit_to_size
from i2v.planning.plan import ExecutionPlan
from i2v.engine.presets import load_presets
from i2v.engine.request import GenerationRequest
from i2v.engine.video import probe_mp4
from test_numeric_safety import nan_output

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
CPU_BF16 = ExecutionPlan(device="cpu", dtype="bfloat16", decode_chunk_size=8)
REAL_IDS = ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers")


def make_request(image: Path, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="waves crashing, camera panning left", model=TINY_WAN_NAME, frames=9, steps=2,
                  seeds=(7,))
    fields.update(changes)
    return GenerationRequest(**fields)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-wan-folder"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


def _copy_with_index(saved: Path, target: Path, **changes) -> Path:
    folder = shutil.copytree(saved, target)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(changes)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


# -- the spec and the model name ---------------------------------------------------------------------------
def test_spec_declares_the_real_models_shape_rules():
    spec = spec_for(REAL_IDS[0])
    assert spec is WAN_SPEC and spec_for(REAL_IDS[1]) is WAN_720P_SPEC
    # Each checkpoint offers only the size it was trained at (Wan's README: neither does the other's).
    assert (WAN_SPEC.resolution_tiers, WAN_720P_SPEC.resolution_tiers) == ((480,), (720,))
    assert (WAN_SPEC.native_size, WAN_720P_SPEC.native_size) == ((832, 480), (1280, 720))
    with pytest.raises(BadInputError, match="720"):
        WAN_SPEC.size_for_tier(720, 16 / 9)
    assert (spec.frame_rule.step, spec.frame_rule.offset, spec.min_frames, spec.max_frames) == (4, 1, 5, 81)
    assert (spec.latent_channels, spec.vae_scale_factor, spec.size_multiple) == (16, 8, 16)
    assert spec.preferred_dtypes == ("bfloat16", "float32")  # never float16
    assert (spec.default_frames, spec.default_steps, spec.default_guidance, spec.default_fps) == (81, 40, 5.0, 16)
    frames, notices = spec.snap_frames(16)
    assert frames == 17 and notices[0].code == "frames.snapped" and "4N+1" in notices[0].message
    assert spec.snap_frames(80)[0] == 81 and spec.snap_frames(33) == (33, [])


def test_tiers_are_wans_areas_at_the_pictures_aspect():
    """Wan's "480p" is about 832×480 pixels (its --size is an area), either way round; "720p" 1280×720."""
    spec = WAN_SPEC
    assert spec.size_for_tier(480, 832 / 480) == ((832, 480), [])
    assert spec.size_for_tier(480, 480 / 832) == ((480, 832), [])
    assert WAN_720P_SPEC.size_for_tier(720, 1280 / 720) == ((1280, 720), [])
    (width, height), _ = spec.size_for_tier(480, 1.0)
    assert width == height and abs(width * height - 832 * 480) / (832 * 480) < 0.05
    (width, height), notices = spec.size_for_tier(480, 2.5)  # a panorama is cropped to 1.8:1
    assert [n.code for n in notices] == ["size.aspect_cropped"] and width / height <= 1.8 + 0.05
    size, notices = spec.snap_size(850, 500)
    assert size == (848, 496) and notices[0].code == "size.snapped"


def test_model_names_pick_the_backend(saved_tiny, tmp_path):
    assert isinstance(backend_for(TINY_WAN_NAME), TinyWanBackend)
    for model in (REAL_IDS[0], "someone/my-wan21-i2v-merge", "someone/WAN_I2V_finetune"):
        assert type(backend_for(model)) is WanBackend, model
    assert type(backend_for(REAL_IDS[1])) is Wan720PBackend
    # "wan" inside another word, or a Wan model that is not image-to-video, is not routed here.
    for model in ("someone/swan-lake-i2v", "rowan/i2v-model", "Wan-AI/Wan2.1-T2V-14B-Diffusers"):
        assert type(backend_for(model)) is I2VGenXLBackend, model
    assert type(backend_for(str(saved_tiny))) is WanBackend  # from model_index.json's _class_name
    # A folder is the 720P checkpoint when its name (or, for a hub cache snapshot, its repo's) says so.
    named = _copy_with_index(saved_tiny, tmp_path / "Wan2.1-I2V-14B-720P-Diffusers")
    snapshot = _copy_with_index(saved_tiny, tmp_path / "models--Wan-AI--Wan2.1-I2V-14B-720P-Diffusers" / "snapshots"
                                / "0123abc")
    assert type(backend_for(str(named))) is Wan720PBackend and type(backend_for(str(snapshot))) is Wan720PBackend
    other = _copy_with_index(saved_tiny, tmp_path / "other", _class_name="WanPipeline")  # text-to-video
    with pytest.raises(ModelLoadError, match="WanPipeline.*supported are"):
        spec_for(str(other))


def test_parameter_counts_of_the_real_architecture():
    """The full-size configs in wan.py, instantiated on the meta device (no memory): the published sizes."""
    assert parameter_counts() == {"transformer": 16_394_878_784, "vae": 126_892_531,
                                  "text_encoder": 5_680_910_336, "image_encoder": 630_766_080}


# -- loading -----------------------------------------------------------------------------------------------
def test_saved_folder_round_trips_through_the_folder_loader(saved_tiny):
    """The folder loader gives back the weights that were saved; in bf16 the VAE stays in float32."""
    backend = WanBackend(str(saved_tiny))
    backend.spec = TINY_WAN_SPEC  # a folder gets the real model's spec; this one is the tiny build
    report = backend.load(CPU_FP32)
    assert report.source == "folder" and report.warnings == ()
    assert report.components["transformer"] == "WanTransformer3DModel"
    assert report.components["scheduler"] == "UniPCMultistepScheduler"
    built = build_tiny_pipeline()
    for name in ("transformer", "vae", "text_encoder", "image_encoder"):
        loaded = getattr(backend.pipeline, name).state_dict()
        for key, value in getattr(built, name).state_dict().items():
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), f"{name}.{key} changed in the round trip"
    assert backend.pipeline.tokenizer("waves").input_ids == built.tokenizer("waves").input_ids
    backend.load(CPU_BF16)  # cast in place
    assert backend.pipeline.transformer.dtype == torch.bfloat16
    assert backend.pipeline.vae.dtype == torch.float32
    assert (tiny_wan_folder() / "model_index.json").is_file()


@pytest.mark.parametrize("shape, message", [
    ({"transformer_in_channels": 32},
     r"VAE has 16 latent channels.*2 × 16 \+ 4 = 36 input channels.*but it takes 32"),
    ({"transformer_out_channels": 8}, r"VAE latent channels is 16 but transformer output channels is 8"),
])
def test_transformer_channels_must_fit_the_vae(tmp_path, shape, message):
    broken = tmp_path / "mismatched"
    build_tiny_pipeline(**shape).save_pretrained(broken)
    with pytest.raises(ModelLoadError, match=message):
        WanBackend(str(broken)).load(CPU_FP32)


def test_a_folder_whose_shape_differs_from_the_spec_is_refused_at_load(tmp_path):
    narrow = tmp_path / "four-channels"
    build_tiny_pipeline(latent_channels=4).save_pretrained(narrow)  # consistent in itself: 2 × 4 + 4 = 12 inputs
    with pytest.raises(ModelLoadError, match=r"VAE has 4 latent channels.*Wan 2.1 I2V 480P expects 16"):
        backend_for(str(narrow)).load(CPU_FP32)


def test_other_wan_variants_and_wrong_schedulers_are_refused(saved_tiny, tmp_path):
    wan22 = _copy_with_index(saved_tiny, tmp_path / "wan22", transformer_2=["diffusers", "WanTransformer3DModel"],
                             boundary_ratio=0.9, image_encoder=[None, None], image_processor=[None, None])
    # Same pipeline class: the registry sends it to the Wan 2.2 family (tests/test_wan22.py); Wan 2.1's loader,
    # should it be given one, still refuses it by name before reading a weight.
    assert type(backend_for(str(wan22))).__name__ == "Wan22A14BBackend"
    with pytest.raises(ModelLoadError, match=r"Wan 2\.2 image-to-video.*only Wan 2\.1"):
        WanBackend(str(wan22)).load(CPU_FP32)
    epsilon = shutil.copytree(saved_tiny, tmp_path / "epsilon")
    config_path = epsilon / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(prediction_type="epsilon", use_flow_sigmas=False)
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"'epsilon'.*Wan needs prediction_type 'flow_prediction'"):
        WanBackend(str(epsilon)).load(CPU_FP32)


def test_uncached_wan_hub_model_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=r"start_app\.sh download someone/Wan2\.1-I2V-not-here"):
        backend_for("someone/Wan2.1-I2V-not-here").load(CPU_FP32)


def test_a_wan_download_fetches_its_own_files(monkeypatch, tmp_path, capsys):
    """Sharded transformer and UMT5 weights, the tokenizer's files and the image processor must be in the allow
    list, or the cache is unusable offline; the original .pth checkpoints beside them must not be fetched."""
    import huggingface_hub

    asked = {}

    def fake_snapshot(repo_id, revision=None, allow_patterns=None):
        asked.update(repo=repo_id, patterns=allow_patterns)
        folder = tmp_path / "snapshots" / "0123abc"
        folder.mkdir(parents=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert main(["download", REAL_IDS[0]]) == 0
    assert asked["repo"] == REAL_IDS[0]
    wanted = ("model_index.json", "transformer/diffusion_pytorch_model-00001-of-00014.safetensors",
              "transformer/diffusion_pytorch_model.safetensors.index.json", "vae/diffusion_pytorch_model.safetensors",
              "text_encoder/model-00001-of-00005.safetensors", "tokenizer/spiece.model", "tokenizer/tokenizer.json",
              "image_encoder/model.safetensors", "image_processor/preprocessor_config.json",
              "scheduler/scheduler_config.json")
    for name in wanted:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in asked["patterns"]), name
    assert not any(fnmatch.fnmatch("models_t5_umt5-xxl-enc-bf16.pth", p) for p in asked["patterns"])
    assert "commit 0123abc" in capsys.readouterr().out


def test_the_built_in_model_has_nothing_to_download(capsys):
    assert main(["download", TINY_WAN_NAME]) == 2
    assert "is not a hub model" in capsys.readouterr().err


# -- generating --------------------------------------------------------------------------------------------
def test_cli_generates_17_frames_for_16_with_a_notice(photo_path, tmp_path, capsys):
    out = tmp_path / "wan.mp4"
    status = main(["generate", "--model", TINY_WAN_NAME, "--image", str(photo_path), "--prompt",
                   "a sailboat drifting slowly to the left", "--frames", "16", "--steps", "2", "--seed", "3",
                   "--output", str(out), "--json"])
    assert status == 0, capsys.readouterr().err
    probe = probe_mp4(out)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert probe["frames"] == 17 and sidecar["video"]["frames"] == 17 and sidecar["params"]["frames"] == 17
    # The picture is 320×256 (1.25:1): the balanced tier's "64p" area (112×64) at that aspect.
    assert probe["size"] == (96, 80) and probe["fps"] == 16
    snapped = [n for n in sidecar["notices"] if n["code"] == "frames.snapped"]
    assert snapped and "16 frames changed to 17" in snapped[0]["message"] and "4N+1" in snapped[0]["message"]
    assert sidecar["model"]["source"] == "built-in" and sidecar["model"]["random_weights"] is True
    assert sidecar["model"]["components"]["image_encoder"] == "CLIPVisionModel"
    assert any(w["code"] == "model.random_weights" for w in sidecar["model_warnings"])


def test_engine_run_is_reproducible_and_reports_progress(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    events = []
    first = engine.generate(make_request(photo_path), on_progress=events.append)
    second = engine.generate(make_request(photo_path))
    other_seed = engine.generate(make_request(photo_path, seeds=(8,)))
    digest = [r.videos[0].record["video"]["frames_sha256"] for r in (first, second, other_seed)]
    assert digest[0] == digest[1] != digest[2]
    assert [(e.step, e.total_steps) for e in events if e.stage == "denoise"] == [(1, 2), (2, 2)]
    assert first.videos[0].record["video"]["frames"] == 9


def test_backend_frames_equal_the_pipeline_called_as_documented(photo_path):
    """Our denoise (latents out) + decode give the frames the pipeline itself returns for the same inputs."""
    from PIL import Image

    backend = TinyWanBackend()
    backend.load(CPU_FP32)
    image = fit_to_size(Image.open(photo_path).convert("RGB"), 112, 64)
    inputs = DenoiseInputs(image=image, prompt="leaves falling", negative_prompt="", width=112, height=64,
                           frames=9, steps=2, guidance=5.0, fps=16, seed=11)
    ours = backend.decode(backend.denoise(inputs, lambda *_: None), CPU_FP32)
    theirs = backend.pipeline(image=image, prompt="leaves falling", height=64, width=112, num_frames=9,
                              num_inference_steps=2, guidance_scale=5.0, output_type="pt",
                              generator=torch.Generator("cpu").manual_seed(11)).frames
    assert ours.shape == (1, 3, 9, 64, 112)
    assert torch.allclose((ours / 2 + 0.5).clamp(0, 1), theirs.permute(0, 2, 1, 3, 4), atol=1e-6)


def test_flow_shift_follows_wans_rule_per_size(photo_path):
    """Shift 3.0 at the small tier, 5.0 above (Wan's generate.py); the loaded scheduler is left as declared."""
    from PIL import Image

    backend = TinyWanBackend()
    backend.load(CPU_FP32)
    seen = {}
    for tier in TINY_WAN_SPEC.resolution_tiers:
        (width, height), _ = TINY_WAN_SPEC.size_for_tier(tier, 1.25)
        image = fit_to_size(Image.open(photo_path).convert("RGB"), width, height)
        inputs = DenoiseInputs(image=image, prompt="snow falling", negative_prompt="", width=width, height=height,
                               frames=5, steps=1, guidance=5.0, fps=16, seed=1)
        backend.denoise(inputs, lambda *_: seen.update({tier: backend.pipeline.scheduler.config.flow_shift}))
    assert seen == {64: 3.0, 96: 5.0}
    assert backend.pipeline.scheduler.config.flow_shift == 3.0
    assert flow_shift_for(WAN_SPEC, 1280, 720, 7.0) == 7.0  # a checkpoint's own non-stock shift is kept
    assert flow_shift_for(WAN_SPEC, 832, 480, 3.0) == 3.0 and flow_shift_for(WAN_SPEC, 1280, 720, 3.0) == 5.0


def test_nan_in_bf16_transformer_is_retried_in_fp32(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    request = make_request(photo_path, dtype="bfloat16")
    clean = engine.generate(request).videos[0].record["video"]["frames_sha256"]
    pipe = engine.backend.pipeline
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    # Hooked on the output projection: the transformer's first parameter is one it keeps in float32.
    with nan_output(pipe.transformer.proj_out, only_dtype=torch.bfloat16) as calls:
        result = engine.generate(request)
    assert calls["n"] == 2  # the first step's two passes (with and without the prompt), then the run stopped
    record = result.videos[0].record
    assert record["plan"]["dtype_used"] == "float32"
    assert any(n["code"] == "numerics.run_retried" for n in record["notices"])
    pipe = engine.backend.pipeline
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32  # back as planned
    assert pipe.transformer.rope.freqs_cos.dtype == torch.float32  # kept as a fresh load keeps it
    # The round trip through float32 changed nothing: the same seed gives the same frames as before it.
    assert engine.generate(request).videos[0].record["video"]["frames_sha256"] == clean
    written = sorted((tmp_path / "out").rglob("*"))
    # The VAE is already in float32: a decode that goes bad has nothing safer to retry in, so it is reported.
    with nan_output(pipe.vae.decoder), pytest.raises(NonFiniteOutputError):
        engine.generate(request)
    assert sorted((tmp_path / "out").rglob("*")) == written  # no black video, no partial file


def test_every_tier_runs_for_the_tiny_model_and_fits_the_real_one(photo_path, tmp_path):
    """Each preset tier is valid for Wan as it is (no refusal, no snapping) and the tiny one runs every tier."""
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    for name, preset in load_presets().items():
        for spec in (WAN_SPEC, WAN_720P_SPEC):
            real = preset.for_model(spec.preset_key)
            assert real.resolution in spec.resolution_tiers and spec.snap_frames(real.frames) == (real.frames, [])
        tiny = preset.for_model(TINY_WAN_SPEC.preset_key)
        result = engine.generate(GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left",
                                                   model=TINY_WAN_NAME, preset=name, seeds=(1,)))
        record = result.videos[0].record
        assert record["video"]["frames"] == tiny.frames and record["params"]["steps"] == tiny.steps, name
        assert not [n for n in record["notices"] if n["code"].startswith(("frames.", "size."))], name
