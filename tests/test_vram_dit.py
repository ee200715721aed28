"""The VRAM model of the diffusion-transformer models (i2v/memory/transformer.py) and what the planner does with it: predictions
that grow as they should, the pipelines' guidance batch, model offload, Wan 14B on an 80 GB and a 24 GB card,
CogVideoX-5b against public figures, and a verdict for every model through ``Engine.prepare`` on a fake GPU. No
weights are needed: nothing here loads a model."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from conftest import photo_like

from i2v.backends import spec_for
from i2v.engine.engine import Engine
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.planner import InsufficientMemoryError, MemoryPlanner, decision_table
from i2v.engine.presets import default_presets, presets_for_model
from i2v.engine.request import GenerationRequest
from i2v.memory.estimate import GIB
from i2v.memory.transformer import TransformerMemoryProfile

COGVIDEOX, WAN, EASYANIMATE = ("THUDM/CogVideoX-5b-I2V", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                               "alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers")
BALANCED = {COGVIDEOX: (720, 480, 49), WAN: (832, 480, 81), EASYANIMATE: (672, 384, 49)}
DOC = (Path(__file__).resolve().parent.parent / "docs" / "VRAM.md").read_text(encoding="utf-8")


def peak(model, **changes):
    width, height, frames = BALANCED[model]
    args = dict(width=width, height=height, frames=frames, dtype="bfloat16", decode_chunk_size=8)
    return spec_for(model).memory.predict_peak(**{**args, **changes})


def prepare(model, card_gib, tmp_path, **request):
    width, height, _ = BALANCED[model]
    image = tmp_path / "picture.png"
    photo_like(width, height).save(image)
    engine = Engine(gpu_info=FixedGpuInfo.single(name=f"Fake {card_gib} GiB", total_gib=card_gib),
                    output_dir=tmp_path / "out")
    return engine.prepare(GenerationRequest(image=image, prompt="waves crashing on rocks, camera panning left",
                                            model=model, preset="balanced", **request))


# -- the formula ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [COGVIDEOX, WAN, EASYANIMATE])
def test_every_real_transformer_model_declares_its_vram_model(model):
    assert isinstance(spec_for(model).memory, TransformerMemoryProfile)


@pytest.mark.parametrize("model", [COGVIDEOX, WAN, EASYANIMATE])
def test_prediction_grows_with_frames_and_tokens_follow_the_latent_grid(model):
    width, height, frames = BALANCED[model]
    short, full = peak(model, frames=17), peak(model)
    assert short.unet_activation_bytes < full.unet_activation_bytes
    assert short.peak_bytes <= full.peak_bytes
    # latent frames (frames − 1)/4 + 1, latents 1/8, patches 2×2
    assert full.tokens == ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
    assert short.tokens == 5 * (height // 16) * (width // 16)


@pytest.mark.parametrize("model", [WAN, EASYANIMATE])
def test_prediction_grows_with_the_size(model):
    small, large = peak(model), peak(model, width=1280, height=720)
    assert large.unet_activation_bytes > 2 * small.unet_activation_bytes
    assert large.peak_bytes > small.peak_bytes


def test_guidance_batch_follows_each_pipeline():
    """CogVideoX and EasyAnimate concatenate cond/uncond (batch 2: twice the per-token activations); Wan calls the
    transformer twice with batch 1, so guidance costs it time, not memory."""
    for model in (COGVIDEOX, EASYANIMATE):
        guided, plain = peak(model), peak(model, guidance=False)
        assert (guided.batch, plain.batch) == (2, 1)
        assert guided.unet_activation_bytes == pytest.approx(2 * plain.unet_activation_bytes, rel=0.02)
    guided, plain = peak(WAN), peak(WAN, guidance=False)
    assert guided.batch == plain.batch == 1 and guided.peak_bytes == plain.peak_bytes


def test_model_offload_keeps_only_the_active_weights_and_wan_decodes_in_float32():
    from i2v.backends.wan.config import parameter_counts

    counts = parameter_counts()
    resident, offload = peak(WAN), peak(WAN, cpu_offload="model")
    fp32 = spec_for(WAN).memory.transformer_fp32_params
    transformer = (counts["transformer"] - fp32) * 2 + fp32 * 4
    vae = counts["vae"] * 4  # float32 in a bfloat16 plan
    assert offload.weights_denoise_bytes == transformer + vae  # the VAE stays from the conditioning encode
    assert offload.weights_decode_bytes == vae
    assert offload.weights_text_bytes == counts["text_encoder"] * 2
    assert resident.weights_denoise_bytes == transformer + vae + 2 * (counts["text_encoder"] + counts["image_encoder"])
    assert offload.peak_bytes < resident.peak_bytes
    fp32_plan = peak(WAN, dtype="float32", cpu_offload="model")
    assert fp32_plan.weights_decode_bytes == vae  # no wider than it was


def test_tiling_lowers_the_decode_not_the_denoising():
    plain, tiled = peak(COGVIDEOX), peak(COGVIDEOX, vae_tiling=True)
    assert tiled.decode_activation_bytes < plain.decode_activation_bytes / 3
    assert tiled.unet_activation_bytes == plain.unet_activation_bytes
    # The causal VAE decodes the clip with a temporal cache: the plan's frame chunks change nothing.
    assert peak(COGVIDEOX, decode_chunk_size=1) == peak(COGVIDEOX, decode_chunk_size=8)


def test_easyanimate_offload_peak_is_the_clip_encode_while_qwen_is_still_on_the_gpu():
    estimate = peak(EASYANIMATE, cpu_offload="model", vae_tiling=True)
    assert estimate.stage == "encode"
    assert estimate.weights_encode_bytes > estimate.weights_denoise_bytes  # Qwen2-VL (8.3 B) + VAE


# -- against public figures ----------------------------------------------------------------------------------------
def test_cogvideox_5b_at_49_frames_is_near_the_published_figures():
    """CogVideoX README: 26 GB in bf16 for the 5B models without diffusers' optimisations (SAT); diffusers docs:
    about 19 GB to decode 49 frames at 720×480 untiled (the VAE alone, CogVideoX-2b); the CogVideoX README of
    August 2024: 20.7 GB for CogVideoX-5B with model offload and VAE tiling (docs/VRAM.md compares them)."""
    assert 24 < peak(COGVIDEOX, vae_tiling=True).peak_gib < 29  # all resident, tiled
    untiled_offload = peak(COGVIDEOX, cpu_offload="model")
    assert untiled_offload.stage == "decode" and 16 < untiled_offload.peak_gib < 20
    assert 13 < peak(COGVIDEOX, cpu_offload="model", vae_tiling=True).peak_gib < 21


# -- the planner ---------------------------------------------------------------------------------------------------
def test_wan_14b_fits_80_gb_as_asked_and_24_gb_by_streaming_its_blocks_and_is_refused_on_8_gb_with_the_figures():
    width, height, frames = BALANCED[WAN]
    spec = spec_for(WAN)
    decision = MemoryPlanner(FixedGpuInfo.single(total_gib=80)).plan(spec, width, height, frames, device=None,
                                                                     dtype="auto")
    assert (decision.width, decision.height, decision.frames) == (width, height, frames)
    assert decision.plan.cpu_offload == "none" and not decision.notices
    assert 45 < decision.estimate.peak_gib < 70
    on_24 = MemoryPlanner(FixedGpuInfo.single(total_gib=24, name="RTX 4090")).plan(spec, width, height, frames,
                                                                                    device=None, dtype="auto")
    assert (on_24.width, on_24.height, on_24.frames) == (width, height, frames)
    assert on_24.plan.cpu_offload == "group" and not on_24.plan.fp8_weights
    assert on_24.estimate.peak_gib <= 24 * 0.95 - 0.5
    notice = next(n for n in on_24.notices if n.code == "plan.memory_saving")
    assert "streaming the models' blocks from CPU RAM (slower" in notice.message and "GiB RAM" in notice.message
    with pytest.raises(InsufficientMemoryError) as refused:
        MemoryPlanner(FixedGpuInfo.single(total_gib=8, name="RTX 3070")).plan(spec, width, height, frames,
                                                                              device=None, dtype="auto")
    message = str(refused.value)
    assert "RTX 3070 has 8.0 GiB free" in message
    # Streamed, no weight is too big: the picture's encode at 832×480 is what does not fit.
    assert re.search(r"even 832×480 × 5 frames with every memory saving needs ~\d+\.\d GiB", message), message


def test_fewer_frames_respect_the_frame_rule_when_nothing_else_fits():
    # 8 GiB of RAM cannot hold streamed weights, so past fp8 storage only fewer frames help on a 22 GiB card.
    width, height, frames = BALANCED[WAN]
    planner = MemoryPlanner(FixedGpuInfo.single(total_gib=22, ram_gib=8))
    decision = planner.plan(spec_for(WAN), width, height, frames, device=None, dtype="auto")
    assert decision.frames < frames and (decision.frames - 1) % 4 == 0
    assert (decision.width, decision.height) == (width, height)
    assert any(n.code == "plan.downgraded" and f"{frames} → {decision.frames} frames" in n.message
               for n in decision.notices)
    gpu = planner.gpu_info.devices()[0]
    ladder = list(planner.candidates(spec_for(WAN), width, height, frames, gpu, "bfloat16"))
    # Every valid count is a rung, so the plan keeps the most frames that fit, not a fraction of the request.
    assert not [c for c in ladder if c.frames > decision.frames and planner.fits(c.estimate, gpu)]


@pytest.mark.parametrize("model, rule", [(COGVIDEOX, 8), (WAN, 4)])
def test_the_transformer_ladder_holds_every_valid_frame_count_and_no_frame_chunks(model, rule):
    width, height, frames = BALANCED[model]
    spec = spec_for(model)
    planner = MemoryPlanner(FixedGpuInfo.single(total_gib=24))
    gpu = planner.gpu_info.devices()[0]
    ladder = list(planner.candidates(spec, width, height, frames, gpu, "bfloat16"))
    assert not [c for c in ladder if any("frame(s) at a time" in change for change in c.changes)]
    assert all((c.frames - 1) % rule == 0 for c in ladder)
    assert sorted({c.frames for c in ladder}) == list(range(spec.min_frames, frames + 1, rule))


def test_the_oom_retry_walks_the_transformer_ladder():
    width, height, frames = BALANCED[EASYANIMATE]
    spec = spec_for(EASYANIMATE)
    planner = MemoryPlanner(FixedGpuInfo.single(total_gib=80))
    decision = planner.plan(spec, width, height, frames, device=None, dtype="auto")
    retry = planner.next_down(spec, width, height, frames, decision)
    assert retry.plan.vae_tiling and retry.plan.cpu_offload == "none" and retry.frames == frames
    retry = planner.next_down(spec, width, height, frames, retry)
    assert retry.plan.cpu_offload == "model" and retry.frames == frames


@pytest.mark.parametrize("model, card, offload", [(COGVIDEOX, 80, "none"), (COGVIDEOX, 24, "model"),
                                                  (EASYANIMATE, 24, "model"), (WAN, 80, "none")])
def test_engine_prepare_gives_a_verdict_with_a_prediction_for_each_model(tmp_path, model, card, offload):
    job = prepare(model, card, tmp_path)
    assert job.plan.device == "cuda:0" and job.plan.cpu_offload == offload
    assert job.decision.estimate is not None and job.decision.estimate.peak_gib <= card
    assert (job.params.width, job.params.height, job.params.frames) == BALANCED[model]
    if offload == "model":
        assert any(n.code == "plan.memory_saving" and "keeping only the active model on the GPU" in n.message
                   for n in job.notices)


def test_easyanimate_fits_16_gb_by_streaming_and_is_refused_there_when_the_ram_cannot_hold_the_weights():
    width, height, frames = BALANCED[EASYANIMATE]
    streamed = MemoryPlanner(FixedGpuInfo.single(total_gib=16, ram_gib=64)).plan(
        spec_for(EASYANIMATE), width, height, frames, device=None, dtype="auto")
    assert streamed.plan.cpu_offload == "group" and streamed.frames == frames
    # Without the RAM to stream from, its Qwen2-VL text encoder (15.4 GiB) is still on the GPU with the VAE while the
    # picture is encoded (model offload's chain).
    with pytest.raises(InsufficientMemoryError, match=r"weights alone take 15\.\d GiB in bfloat16 \(encode stage\)"):
        MemoryPlanner(FixedGpuInfo.single(total_gib=16, ram_gib=16)).plan(spec_for(EASYANIMATE), width, height,
                                                                          frames, device=None, dtype="auto")


def test_engine_prepare_plans_wan_on_24_gb_with_streamed_blocks_and_refuses_it_on_8_gb_before_loading(tmp_path):
    assert prepare(WAN, 24, tmp_path).plan.cpu_offload == "group"
    with pytest.raises(InsufficientMemoryError, match=r"does not fit.*Fake 8 GiB has 8\.0 GiB free"):
        prepare(WAN, 8, tmp_path)


@pytest.mark.parametrize("model", ["tiny-cogvideox", "tiny-wan", "tiny-easyanimate"])
def test_test_models_are_planned_with_their_own_small_profile(tmp_path, model):
    from i2v.backends import backend_class_for

    image = tmp_path / "picture.png"
    photo_like(96, 64).save(image)
    engine = Engine(gpu_info=FixedGpuInfo.single(total_gib=8), output_dir=tmp_path / "out")
    job = engine.prepare(GenerationRequest(image=image, prompt="waves crashing", model=model, preset="balanced"))
    assert job.plan.device == "cuda:0" and job.plan.cpu_offload == "none"
    assert job.decision.estimate.peak_bytes < GIB  # the CUDA context and a few megabytes
    # The profile's parameter counts are those of the build (so the weights in the prediction are the model's).
    built = importlib.import_module(backend_class_for(model).__module__).build_tiny_components()
    memory = spec_for(model).memory
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in built.items()
              if hasattr(part, "parameters")}
    assert (memory.transformer_params, memory.text_encoder_params, memory.vae_params,
            memory.image_encoder_params) == (counts["transformer"], counts["text_encoder"], counts["vae"],
                                             counts.get("image_encoder", 0))


@pytest.mark.parametrize("model", [COGVIDEOX, WAN, EASYANIMATE])
def test_parameter_counts_in_the_profiles_match_the_real_architectures(model):

    from i2v.backends.cogvideox import backend as cogvideox
    from i2v.backends.easyanimate import backend as easyanimate
    from i2v.backends.wan import config as wan_config

    counting = {COGVIDEOX: cogvideox.parameter_counts, WAN: wan_config.parameter_counts,
                EASYANIMATE: easyanimate.parameter_counts}
    counts = counting[model]()
    memory = spec_for(model).memory
    assert (memory.transformer_params, memory.text_encoder_params, memory.vae_params,
            memory.image_encoder_params) == (counts["transformer"], counts["text_encoder"], counts["vae"],
                                             counts.get("image_encoder", 0))


@pytest.mark.parametrize("model", [COGVIDEOX, WAN, "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", EASYANIMATE])
def test_vram_doc_tables_match_the_planner(model):
    spec = spec_for(model)
    table = decision_table(spec, presets_for_model(default_presets(), spec.preset_key), (12, 16, 24, 40, 48, 80),
                           aspect=spec.native_size[0] / spec.native_size[1])
    assert table in DOC, f"docs/VRAM.md is out of date for {spec.family}:\n{table}"
