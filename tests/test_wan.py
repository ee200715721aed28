"""Wan 2.1's own rules (its spec and tiers as trained areas, the 480P/720P checkpoints told apart by name, the VAE
kept in float32, the flow shift per size, Wan 2.2 and wrong schedulers refused, its hub files), exercised on
``tiny-wan`` and the real model's spec. What every family shares (loading through the folder loader, generating,
the frame-rule notice, the channel check, cancel, NaN retry, determinism) is in ``test_family_behaviour.py``."""
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
from i2v.backends.wan.backend import WAN_720P_SPEC, WAN_SPEC, Wan720PBackend, WanBackend, flow_shift_for
from i2v.backends.wan.config import parameter_counts
from i2v.backends.wan.tiny import TINY_WAN_NAME, TINY_WAN_SPEC, TinyWanBackend, build_tiny_pipeline
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.errors import BadInputError, ModelLoadError, ModelNotAvailableError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.images import fit_to_size
from i2v.planning.plan import ExecutionPlan
from i2v.engine.presets import load_presets
from i2v.engine.request import GenerationRequest

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
CPU_BF16 = ExecutionPlan(device="cpu", dtype="bfloat16", decode_chunk_size=8)
REAL_IDS = ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers")


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
    for model in (REAL_IDS[0], "someone/my-wan21-i2v-merge", "someone/WAN_2.1_I2V_finetune"):
        assert type(backend_for(model)) is WanBackend, model
    assert type(backend_for(REAL_IDS[1])) is Wan720PBackend
    # "wan" inside another word, a Wan model that is not image-to-video, or one that does not say its version is not
    # guessed: it is refused (a fine-tune is named by its folder, the cache or --family).
    for model in ("someone/swan-lake-i2v", "rowan/i2v-model", "Wan-AI/Wan2.1-T2V-14B-Diffusers",
                  "someone/WAN_I2V_finetune"):
        with pytest.raises(BadInputError, match="Cannot tell which model family"):
            backend_for(model)
    assert type(backend_for("someone/WAN_I2V_finetune", "wan2.1-i2v-480p")) is WanBackend
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
@pytest.mark.parametrize("first_plan", [CPU_BF16, CPU_FP32], ids=["loaded-in-bf16", "cast-in-place-to-bf16"])
def test_in_bf16_the_vae_and_the_modules_diffusers_keeps_stay_in_float32(first_plan):
    """Wan's VAE runs in float32 whatever the plan, and the transformer's rotary tables stay in float32 as diffusers
    keeps them; the rest of the transformer is bf16. Loaded so, or cast in place from a float32 load."""
    backend = TinyWanBackend()
    backend.load(first_plan)
    backend.load(CPU_BF16)
    pipe = backend.pipeline
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.transformer.proj_out.weight.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32
    assert pipe.transformer.rope.freqs_cos.dtype == torch.float32


def test_transformer_output_channels_must_be_the_vae_latent_channels(tmp_path):
    # Its input channels (2 × 16 + 4) are checked for every family in test_family_behaviour.py.
    broken = tmp_path / "mismatched"
    build_tiny_pipeline(transformer_out_channels=8).save_pretrained(broken)
    with pytest.raises(ModelLoadError, match=r"VAE latent channels is 16 but transformer output channels is 8"):
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


# -- generating --------------------------------------------------------------------------------------------
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


def test_every_tier_runs_for_the_tiny_model_and_fits_the_real_one(photo_path, tmp_path):
    """Each preset tier is valid for Wan as it is (no refusal, no snapping) and the tiny one runs every tier."""
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    for name, preset in load_presets().items():
        if preset.models_only:
            continue  # turbo needs its step-distilled LoRA: tests/test_loras.py runs it
        for spec in (WAN_SPEC, WAN_720P_SPEC):
            real = preset.for_model(spec.preset_key)
            assert real.resolution in spec.resolution_tiers and spec.snap_frames(real.frames) == (real.frames, [])
        tiny = preset.for_model(TINY_WAN_SPEC.preset_key)
        result = engine.generate(GenerationRequest(image=photo_path, prompt="waves crashing, camera panning left",
                                                   model=TINY_WAN_NAME, preset=name, seeds=(1,)))
        record = result.videos[0].record
        assert record["video"]["frames"] == tiny.frames and record["params"]["steps"] == tiny.steps, name
        # Only the framing notice (the picture's 1.25:1 cropped to the tier's shape) may speak of the size.
        assert not [n for n in record["notices"] if n["code"].startswith(("frames.", "size."))
                    and n["code"] != "size.aspect_cropped"], name
