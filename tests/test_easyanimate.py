"""EasyAnimate V5.1's own rules (its spec and free sizes, the inpaint conditioning: the picture as frame zero and a
mask, Qwen2-VL's chat template or a Bert text encoder, a folder that is not the real model's shape, its presets and hub
files), exercised on ``tiny-easyanimate`` and the real model's spec. What every family shares (loading through the
folder loader, generating, the frame-rule notice, the channel check, cancel, NaN retry, determinism) is in
``test_family_behaviour.py``."""
from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import photo_like
from i2v.backends import backend_for
from i2v.backends import spec_for
from i2v.backends.base import DenoiseInputs
from i2v.backends.easyanimate.backend import (
    EASYANIMATE_SPEC,
    HUB_ALLOW_PATTERNS,
    TRANSFORMER_CONFIG,
    EasyAnimateBackend,
    i2v_conditioning,
    inpaint_in_channels,
    parameter_counts,
)
from i2v.backends.easyanimate.tiny import (
    TINY_EASYANIMATE_NAME,
    TINY_EASYANIMATE_SPEC,
    TinyEasyAnimateBackend,
    build_tiny_pipeline,
)
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.errors import BadInputError, ModelLoadError, ModelNotAvailableError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import ExecutionPlan
from i2v.engine.presets import load_presets, presets_for_model
from i2v.engine.request import GenerationRequest

HUB_ID = "alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers"
CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)


def make_request(image: Path, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="waves crashing, camera panning left", model=TINY_EASYANIMATE_NAME,
                  frames=9, steps=2, seeds=(7,))
    fields.update(changes)
    return GenerationRequest(**fields)


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-easyanimate-folder"
    build_tiny_pipeline().save_pretrained(folder)
    return folder


# -- the spec and the model name ---------------------------------------------------------------------------
def test_spec_declares_the_real_models_shape_rules():
    spec = spec_for(HUB_ID)
    assert spec is EASYANIMATE_SPEC
    assert (spec.frame_rule.step, spec.frame_rule.offset, spec.default_frames, spec.max_frames) == (4, 1, 49, 49)
    assert spec.latent_channels == 16 and spec.vae_scale_factor == 8 and spec.size_multiple == 16
    assert not spec.fixed_size and spec.resolution_tiers == (512, 768, 1024)
    assert spec.preferred_dtypes[0] == "bfloat16" and "float16" not in spec.preferred_dtypes
    assert (spec.default_guidance, spec.default_steps, spec.default_fps) == (6.0, 50, 8)
    frames, notices = spec.snap_frames(16)
    assert frames == 17 and "16 frames changed to 17" in notices[0].message and "4N+1" in notices[0].message
    assert spec.snap_frames(48)[0] == 49 and spec.snap_frames(25) == (25, [])
    # Free sizes: the tier is an area at the picture's aspect ratio, sides in multiples of 16.
    assert spec.size_for_tier(512, 1.75) == ((672, 384), [])  # the authors' example size, their 1.75 bucket
    for tier in spec.resolution_tiers:
        for aspect in (0.5, 0.75, 1.0, 4 / 3, 2.0):
            (width, height), notices = spec.size_for_tier(tier, aspect)
            assert width % 16 == 0 and height % 16 == 0 and not notices
            assert abs(width * height / tier**2 - 1) < 0.1
    (width, height), notices = spec.size_for_tier(512, 3.0)
    assert width / height == pytest.approx(2.0, rel=0.05) and [n.code for n in notices] == ["size.aspect_cropped"]


def test_the_declared_real_architecture_has_the_published_size():
    """The config dicts at the top of the backend module are the real checkpoint's: the transformer has exactly
    the parameter count published for EasyAnimateV5.1-7b-zh-InP, and reads 16 + 1 + 16 channels."""
    counts = parameter_counts()
    assert counts["transformer"] == 6_814_670_912
    assert TRANSFORMER_CONFIG["in_channels"] == inpaint_in_channels(16, True) == 33
    assert 0.24e9 < counts["vae"] < 0.25e9 and 8.2e9 < counts["text_encoder"] < 8.4e9


def test_model_names_pick_the_backend(saved_tiny, tmp_path):
    assert isinstance(backend_for(TINY_EASYANIMATE_NAME), TinyEasyAnimateBackend)
    assert type(backend_for(HUB_ID)) is EasyAnimateBackend
    assert type(backend_for("someone/my-EASYANIMATE-InP-finetune")) is EasyAnimateBackend
    with pytest.raises(BadInputError, match="Cannot tell which model family"):  # text-to-video or InP? not guessed
        backend_for("someone/my-EASYANIMATE-finetune")
    assert type(backend_for("someone/my-EASYANIMATE-finetune", "easyanimate-v5.1")) is EasyAnimateBackend
    assert type(backend_for("ali-vilab/i2vgen-xl")) is I2VGenXLBackend
    assert type(backend_for(str(saved_tiny))) is EasyAnimateBackend  # from model_index.json's _class_name
    other = shutil.copytree(saved_tiny, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "EasyAnimatePipeline"  # text-to-video: not ours
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="EasyAnimatePipeline.*supported are"):
        spec_for(str(other))


def test_every_preset_tier_is_valid_for_the_real_model(photo_path):
    """The real model's presets resolve without a refusal and without snapping (their frame counts are 4N+1)."""
    engine = Engine(gpu_info=FixedGpuInfo.none())
    expected = {"fast-check": (512, 25, 30), "balanced": (512, 49, 50), "high-quality": (768, 49, 50)}
    for name, (tier, frames, steps) in expected.items():
        job = engine.prepare(GenerationRequest(image=photo_path, prompt="waves crashing", model=HUB_ID, preset=name))
        params = job.params
        assert (params.resolution, params.frames, params.steps, params.guidance, params.fps) == (
            tier, frames, steps, 6.0, 8)
        assert params.width % 16 == 0 and params.height % 16 == 0
        assert not [n for n in job.notices if n.code.startswith(("frames.", "size."))]


# -- what the model is given -------------------------------------------------------------------------------
def test_the_picture_becomes_frame_zero_and_the_rest_is_padded_with_it_not_zeros():
    from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent

    picture = photo_like(96, 64)
    video, mask = i2v_conditioning(picture, 9)
    assert video.shape == (1, 3, 9, 64, 96) and mask.shape == (1, 1, 9, 64, 96)
    first = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)
    for frame in range(9):  # every frame is the picture (the edge frame), none is black
        assert torch.equal(video[0, :, frame], first)
    assert torch.all(mask[:, :, 0] == 0) and torch.all(mask[:, :, 1:] == 255)  # keep frame 0, generate the rest
    upstream_video, upstream_mask = get_image_to_video_latent([picture], None, 9, (64, 96))
    assert torch.equal(video, upstream_video) and torch.equal(mask, upstream_mask)


# -- loading -----------------------------------------------------------------------------------------------
def test_the_loaded_folder_keeps_qwen2s_chat_template_and_gets_the_vae_flag_the_pipeline_reads(saved_tiny):
    """The Qwen2 tokenizer comes back with its chat template and special tokens (the pipeline wraps every prompt in
    it), and the VAE config gains the flag the inpaint pipeline's image-to-video path reads."""
    backend = EasyAnimateBackend(str(saved_tiny))
    backend.spec = TINY_EASYANIMATE_SPEC  # a folder gets the real model's 16-channel spec; this is the tiny build
    backend.load(CPU_FP32)
    built = build_tiny_pipeline()
    messages = [{"role": "user", "content": [{"type": "text", "text": "waves"}]}]
    for tokenizer in (backend.pipeline.tokenizer, built.tokenizer):
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
            "<|im_start|>user\nwaves<|im_end|>\n<|im_start|>assistant\n")
    assert backend.pipeline.tokenizer("<|im_start|>waves").input_ids == built.tokenizer("<|im_start|>waves").input_ids
    assert backend.pipeline.vae.config.cache_mag_vae is True  # added at load: the inpaint pipeline reads it


def test_a_bert_text_encoder_folder_loads_and_generates(tmp_path):
    """The pipeline also accepts Bert as its text encoder; the loader takes it and the model runs."""
    folder = tmp_path / "bert"
    build_tiny_pipeline(text_encoder="bert").save_pretrained(folder)
    backend = EasyAnimateBackend(str(folder))
    backend.spec = TINY_EASYANIMATE_SPEC
    report = backend.load(CPU_FP32)
    assert report.warnings == ()
    assert (report.components["text_encoder"], report.components["tokenizer"]) == ("BertModel", "BertTokenizer")
    steps = []
    inputs = DenoiseInputs(image=photo_like(64, 48), prompt="leaves falling", negative_prompt="", width=64,
                           height=48, frames=5, steps=2, guidance=6.0, fps=8, seed=1)
    latents = backend.denoise(inputs, lambda done, total, _latents: steps.append((done, total)))
    video = backend.decode(latents, CPU_FP32)
    assert steps == [(1, 2), (2, 2)]
    assert video.shape == (1, 3, 5, 48, 64) and torch.isfinite(video).all()


def test_a_folder_whose_shape_differs_from_the_spec_is_refused_at_load(saved_tiny):
    # A folder gets the real model's spec (16 latent channels); the tiny build has 4.
    with pytest.raises(ModelLoadError, match=r"VAE has 4 latent channels at 1/8 size.*EasyAnimate V5.1 InP expects 16"):
        backend_for(str(saved_tiny)).load(CPU_FP32)


# -- generating --------------------------------------------------------------------------------------------
def test_every_tiny_preset_runs_on_a_cpu_in_seconds(photo_path, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    for name, values in presets_for_model(load_presets(), TINY_EASYANIMATE_SPEC.preset_key).items():
        result = engine.generate(make_request(photo_path, frames=None, steps=None, preset=name))
        record = result.videos[0].record
        assert record["video"]["frames"] == values.frames and values.frames % 4 == 1, name
        assert record["params"]["steps"] == values.steps and record["params"]["resolution"] == values.resolution
        assert not [n for n in record["notices"] if n["code"] == "frames.snapped"], name


# -- getting the real model --------------------------------------------------------------------------------
def test_uncached_easyanimate_hub_model_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=r"start_app\.sh download someone/EasyAnimate-not-here"):
        backend_for("someone/EasyAnimate-not-here", "easyanimate-v5.1").load(CPU_FP32)


def test_an_easyanimate_download_fetches_its_own_files(monkeypatch, tmp_path, capsys):
    """Split weights, Qwen2's tokenizer files and the chat template must be in the allow list, or the cache is
    unusable offline; sample videos in the repo are not fetched."""
    import huggingface_hub

    asked = {}

    def fake_snapshot(repo_id, revision=None, allow_patterns=None):
        asked.update(repo=repo_id, patterns=allow_patterns)
        folder = tmp_path / "snapshots" / "0123abc"
        folder.mkdir(parents=True)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert main(["download", HUB_ID]) == 0
    assert asked["repo"] == HUB_ID and asked["patterns"] == HUB_ALLOW_PATTERNS
    needed = ("model_index.json", "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
              "transformer/diffusion_pytorch_model.safetensors.index.json", "vae/diffusion_pytorch_model.safetensors",
              "text_encoder/model-00001-of-00004.safetensors", "text_encoder/model.safetensors.index.json",
              "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
              "tokenizer/chat_template.jinja", "scheduler/scheduler_config.json")
    for name in needed:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in asked["patterns"]), name
    assert not any(fnmatch.fnmatch("asset/1.mp4", pattern) for pattern in asked["patterns"])
    assert "commit 0123abc" in capsys.readouterr().out
