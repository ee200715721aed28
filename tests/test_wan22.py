"""Wan 2.2 image-to-video (TI2V-5B and I2V-A14B), exercised on ``tiny-wan22-ti2v`` and ``tiny-wan22-a14b`` (real
diffusers classes, random weights, saved with ``save_pretrained`` and loaded back through the same folder loader as
the real checkpoints): each model's own rules, the two experts, the last frame, the load-time refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import photo_like

from i2v.backends import backend_class_for, backend_for, last_frame_models, spec_for
from i2v.backends.base import DenoiseInputs
from i2v.backends.wan.backend import WanBackend
from i2v.backends.wan22 import config as wan22_config
from i2v.backends.wan22.backend import Wan22A14BBackend, Wan22TI2VBackend
from i2v.backends.wan22.spec import A14B_SPEC, TI2V_5B_SPEC
from i2v.backends.wan22.tiny import (
    TINY_A14B_NAME,
    TINY_A14B_SPEC,
    TINY_TI2V_NAME,
    TINY_TI2V_SPEC,
    TinyWan22A14BBackend,
    build_tiny_a14b_components,
    build_tiny_a14b_pipeline,
    build_tiny_ti2v_components,
    build_tiny_ti2v_pipeline,
)
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.engine.presets import default_presets, load_presets, presets_for_model
from i2v.engine.request import GenerationRequest
from i2v.engine.video import probe_mp4
from i2v.errors import BadInputError, ModelLoadError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.images import fit_to_size
from i2v.memory.estimate import GIB
from i2v.planning.plan import ExecutionPlan
from i2v.planning.planner import decision_table

TI2V_ID, A14B_ID = "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
PROMPT = "waves crashing, camera panning left"
DOC = (Path(__file__).resolve().parent.parent / "docs" / "VRAM.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Both twins saved as the hub saves them (TI2V-5B: WanPipeline + expand_timesteps; A14B: two experts)."""
    root = tmp_path_factory.mktemp("wan22-models")
    folders = {"ti2v": root / "Wan2.2-TI2V-5B-Diffusers", "a14b": root / "Wan2.2-I2V-A14B-Diffusers"}
    build_tiny_ti2v_pipeline().save_pretrained(folders["ti2v"])
    build_tiny_a14b_pipeline().save_pretrained(folders["a14b"])
    return folders


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wan22-pictures")
    paths = {"first": root / "first.png", "last": root / "last.png"}
    photo_like(320, 256).save(paths["first"])
    photo_like(320, 256, seed=5).save(paths["last"])
    return paths


def _with_index(saved: Path, target: Path, **changes) -> Path:
    folder = shutil.copytree(saved, target)
    index = json.loads((folder / "model_index.json").read_text())
    index.update(changes)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- the specs and the names -------------------------------------------------------------------------------
def test_ti2v_5b_declares_its_own_rules():
    spec = spec_for(TI2V_ID)
    assert spec is TI2V_5B_SPEC and not spec.takes_last_image
    assert (spec.frame_rule.step, spec.frame_rule.offset, spec.min_frames, spec.max_frames) == (4, 1, 5, 121)
    # 16× VAE × 2×2 patches: sides in multiples of 32; 48 latent channels; 1280×704 at 24 fps, its own defaults.
    assert (spec.latent_channels, spec.vae_scale_factor, spec.size_multiple) == (48, 16, 32)
    assert (spec.native_size, spec.resolution_tiers) == ((1280, 704), (720,))
    assert (spec.default_frames, spec.default_steps, spec.default_guidance, spec.default_fps) == (121, 50, 5.0, 24)
    assert spec.size_for_tier(720, 1280 / 704) == ((1280, 704), [])
    assert spec.size_for_tier(720, 704 / 1280) == ((704, 1280), [])
    frames, notices = spec.snap_frames(16)
    assert frames == 17 and "16 frames changed to 17" in notices[0].message and "4N+1" in notices[0].message
    assert spec.snap_size(1000, 700)[0] == (992, 704)


def test_a14b_declares_its_own_rules():
    spec = spec_for(A14B_ID)
    assert spec is A14B_SPEC and spec.takes_last_image and spec.memory.experts == 2
    assert (spec.max_frames, spec.size_multiple, spec.latent_channels, spec.resolution_tiers) == (81, 16, 16,
                                                                                                  (480, 720))
    assert (spec.default_frames, spec.default_steps, spec.default_guidance, spec.default_fps) == (81, 40, 3.5, 16)
    assert spec.size_for_tier(480, 832 / 480) == ((832, 480), [])
    assert spec.size_for_tier(720, 1280 / 720) == ((1280, 720), [])
    assert last_frame_models() == [A14B_ID, TINY_A14B_NAME]


def test_hub_ids_route_wan22_apart_from_wan21():
    for model, expected in ((TI2V_ID, Wan22TI2VBackend), (A14B_ID, Wan22A14BBackend),
                            ("someone/wan2.2-ti2v-5b-merge", Wan22TI2VBackend),
                            ("someone/Wan22_I2V_A14B_finetune", Wan22A14BBackend),
                            ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", WanBackend)):
        assert backend_class_for(model) is expected, model
    with pytest.raises(BadInputError, match="Cannot tell which model family"):  # "wan" inside another word
        backend_class_for("someone/swan2.2-i2v")
    with pytest.raises(BadInputError, match=r"Wan 2\.2 text-to-video.*Wan2\.2-I2V-A14B-Diffusers"):
        spec_for("Wan-AI/Wan2.2-T2V-A14B-Diffusers")


def test_parameter_counts_of_the_real_architectures_are_the_profiles():
    """The configurations in wan22/config.py on the meta device: 5.0 B and 2 × 14.3 B, as published."""
    ti2v, a14b = wan22_config.parameter_counts("ti2v-5b"), wan22_config.parameter_counts("a14b")
    assert ti2v == {"transformer": 4_999_787_712, "vae": 704_688_668, "text_encoder": 5_680_910_336,
                    "transformer_fp32": 10_973_184}
    assert a14b == {"transformer": 14_288_901_184, "vae": 126_892_531, "text_encoder": 5_680_910_336,
                    "transformer_fp32": 29_184_000}
    for spec, counts in ((TI2V_5B_SPEC, ti2v), (A14B_SPEC, a14b)):
        memory = spec.memory
        assert (memory.transformer_params, memory.transformer_fp32_params, memory.text_encoder_params,
                memory.vae_params, memory.image_encoder_params) == (
            counts["transformer"], counts["transformer_fp32"], counts["text_encoder"], counts["vae"], 0)


@pytest.mark.parametrize("spec, build", [(TINY_TI2V_SPEC, build_tiny_ti2v_components),
                                         (TINY_A14B_SPEC, build_tiny_a14b_components)])
def test_tiny_profiles_count_the_tiny_builds(spec, build):
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in build().items()
              if hasattr(part, "parameters")}
    memory = spec.memory
    assert (memory.transformer_params, memory.text_encoder_params, memory.vae_params) == (
        counts["transformer"], counts["text_encoder"], counts["vae"])
    assert counts.get("transformer_2", counts["transformer"]) == counts["transformer"]  # experts: same shape


# -- memory: one expert computes at a time ------------------------------------------------------------------
def test_a14b_keeps_both_experts_without_offload_and_one_with_model_offload():
    memory = A14B_SPEC.memory
    args = dict(width=832, height=480, frames=81, dtype="bfloat16")
    resident, offloaded = memory.predict_peak(**args), memory.predict_peak(**args, cpu_offload="model")
    expert = (memory.transformer_params - memory.transformer_fp32_params) * 2 + memory.transformer_fp32_params * 4
    vae = memory.vae_params * 4  # float32 in every plan
    assert offloaded.weights_denoise_bytes == expert + vae
    assert resident.weights_denoise_bytes == 2 * expert + vae + memory.text_encoder_params * 2
    # Activations are one expert's either way (they take turns).
    assert resident.unet_activation_bytes == offloaded.unet_activation_bytes
    assert offloaded.peak_gib < 40 < resident.peak_gib


def test_ti2v_5b_fits_a_24_gib_card_with_offload_and_tiling(tmp_path):
    image = tmp_path / "picture.png"
    photo_like(1280, 704).save(image)
    engine = Engine(gpu_info=FixedGpuInfo.single(name="Fake 24 GiB", total_gib=24), output_dir=tmp_path / "out")
    job = engine.prepare(GenerationRequest(image=image, prompt=PROMPT, model=TI2V_ID, preset="balanced"))
    assert (job.params.width, job.params.height, job.params.frames) == (1280, 704, 121)
    assert job.plan.cpu_offload == "model" and job.decision.estimate.peak_bytes < 24 * GIB


@pytest.mark.parametrize("model", [TINY_TI2V_NAME, TINY_A14B_NAME])
def test_the_twins_are_planned_on_a_gpu_with_their_own_small_profile(tmp_path, pictures, model):
    engine = Engine(gpu_info=FixedGpuInfo.single(total_gib=8), output_dir=tmp_path / "out")
    job = engine.prepare(GenerationRequest(image=pictures["first"], prompt=PROMPT, model=model, preset="balanced"))
    assert job.plan.device == "cuda:0" and job.plan.cpu_offload == "none"
    assert job.decision.estimate.peak_bytes < GIB  # the CUDA context and a few megabytes


@pytest.mark.parametrize("model", [TI2V_ID, A14B_ID])
def test_vram_doc_tables_match_the_planner(model):
    spec = spec_for(model)
    table = decision_table(spec, presets_for_model(default_presets(), spec.preset_key), (12, 16, 24, 40, 48, 80),
                           aspect=spec.native_size[0] / spec.native_size[1])
    assert table in DOC, f"docs/VRAM.md is out of date for {spec.family}:\n{table}"


def test_every_tier_is_valid_for_the_real_models_as_it_is():
    for spec in (TI2V_5B_SPEC, A14B_SPEC):
        for name, values in presets_for_model(load_presets(), spec.preset_key).items():
            assert values.resolution in spec.resolution_tiers, (name, spec.family)
            assert spec.snap_frames(values.frames) == (values.frames, []), (name, spec.family)


# -- folders: which checkpoint, and the load-time refusals ----------------------------------------------------
def test_folders_are_told_apart_by_their_model_index(saved, tmp_path):
    assert json.loads((saved["ti2v"] / "model_index.json").read_text())["_class_name"] == "WanPipeline"
    assert type(backend_for(str(saved["ti2v"]))) is Wan22TI2VBackend
    assert type(backend_for(str(saved["a14b"]))) is Wan22A14BBackend
    # Wan 2.1's loader still refuses a Wan 2.2 folder by name, should one reach it.
    with pytest.raises(ModelLoadError, match=r"Wan 2\.2 image-to-video"):
        WanBackend(str(saved["a14b"])).load(CPU_FP32)
    # Wan 2.2 text-to-video (WanPipeline with two experts) is refused by name, before loading.
    t2v = _with_index(saved["a14b"], tmp_path / "Wan2.2-T2V-A14B-Diffusers", _class_name="WanPipeline")
    with pytest.raises(ModelLoadError, match=r"Wan 2\.2 T2V-A14B, a text-to-video checkpoint.*Wan2\.2-I2V-A14B"):
        spec_for(str(t2v))
    # A WanPipeline folder that is neither (Wan 2.1 text-to-video) is still not ours.
    plain = _with_index(saved["ti2v"], tmp_path / "t2v-21", expand_timesteps=False)
    with pytest.raises(ModelLoadError, match="WanPipeline.*supported are"):
        spec_for(str(plain))


@pytest.mark.parametrize("name, backend", [("ti2v", Wan22TI2VBackend), ("a14b", Wan22A14BBackend)])
def test_saved_twins_round_trip_through_the_folder_loader(saved, name, backend):
    model = backend(str(saved[name]))
    model.spec = {"ti2v": TINY_TI2V_SPEC, "a14b": TINY_A14B_SPEC}[name]  # a folder gets the real spec
    report = model.load(CPU_FP32)
    assert report.source == "folder" and report.warnings == ()  # no weight-key findings
    built = (build_tiny_ti2v_pipeline if name == "ti2v" else build_tiny_a14b_pipeline)()
    parts = ("transformer", "vae", "text_encoder") + (("transformer_2",) if name == "a14b" else ())
    for part in parts:
        loaded = getattr(model.pipeline, part).state_dict()
        for key, value in getattr(built, part).state_dict().items():
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), f"{part}.{key} changed in the round trip"
    assert model.pipeline.config.expand_timesteps == (name == "ti2v")
    assert model.pipeline.config.boundary_ratio == (0.9 if name == "a14b" else None)
    assert model.pipeline.vae.dtype == torch.float32


def test_a_16_channel_vae_with_a_48_channel_transformer_is_refused_naming_both(tmp_path):
    broken = tmp_path / "Wan2.2-TI2V-5B-mixed"
    build_tiny_ti2v_pipeline(vae_channels=16).save_pretrained(broken)
    with pytest.raises(ModelLoadError, match=r"VAE has 16 latent channels but the transformer takes 48 input"):
        backend_for(str(broken)).load(CPU_FP32)


def test_a_text_to_video_transformer_in_an_a14b_folder_is_refused_by_name(tmp_path):
    folder = tmp_path / "Wan2.2-I2V-A14B-with-t2v-transformer"
    build_tiny_a14b_pipeline(transformer_in_channels=16).save_pretrained(folder)
    with pytest.raises(ModelLoadError, match=r"takes 16 input channels.*text-to-video transformer \(Wan 2\.2 T2V"):
        backend_for(str(folder)).load(CPU_FP32)


# -- generating ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, pictures):
    """One CLI run per twin at 16 frames (snapped to 17), A14B with a last frame: {name: (status, mp4, err)}."""
    root = tmp_path_factory.mktemp("wan22-cli")
    runs = {}
    for name, extra in ((TINY_TI2V_NAME, []), (TINY_A14B_NAME, ["--last-image", str(pictures["last"])])):
        out = root / f"{name}.mp4"
        status = main(["generate", "--model", name, "--image", str(pictures["first"]), "--prompt", PROMPT,
                       "--frames", "16", "--steps", "2", "--seed", "3", "--output", str(out), "--json", *extra])
        runs[name] = (status, out)
    return runs


@pytest.mark.parametrize("name, size, fps", [(TINY_TI2V_NAME, (96, 64), 24), (TINY_A14B_NAME, (96, 80), 16)])
def test_cli_generates_17_frames_for_16_at_the_models_fps(cli_runs, name, size, fps):
    status, out = cli_runs[name]
    assert status == 0
    probe, sidecar = probe_mp4(out), json.loads(out.with_suffix(".json").read_text())
    assert probe["frames"] == 17 and sidecar["params"]["frames"] == 17
    # The 320×256 picture (1.25:1) at the balanced tier's area; TI2V's sides are multiples of 32.
    assert probe["size"] == size and probe["fps"] == fps and sidecar["params"]["fps"] == fps
    snapped = [n for n in sidecar["notices"] if n["code"] == "frames.snapped"]
    assert snapped and "16 frames changed to 17" in snapped[0]["message"] and "4N+1" in snapped[0]["message"]
    assert sidecar["model"]["random_weights"] is True and "image_encoder" not in sidecar["model"]["components"]
    assert (sidecar["params"]["last_image_sha256"] is not None) == (name == TINY_A14B_NAME)
    assert ("--last-image" in sidecar["reproduce"]) == (name == TINY_A14B_NAME)


def test_a14b_runs_each_expert_on_its_side_of_the_boundary(pictures):
    backend = TinyWan22A14BBackend()
    backend.load(CPU_FP32)
    pipe = backend.pipeline
    seen = {"transformer": [], "transformer_2": []}
    hooks = [getattr(pipe, name).register_forward_pre_hook(
        lambda _module, _args, kwargs, name=name: seen[name].append(float(kwargs["timestep"].flatten()[0])),
        with_kwargs=True) for name in seen]
    try:
        backend.denoise(_inputs(pictures, steps=6), lambda *_: None)
    finally:
        for hook in hooks:
            hook.remove()
    boundary = pipe.config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
    assert seen["transformer"] and seen["transformer_2"]  # both experts ran
    assert min(seen["transformer"]) >= boundary > max(seen["transformer_2"])
    assert len(seen["transformer"]) + len(seen["transformer_2"]) == 12  # two passes (with guidance) per step


def _inputs(pictures, *, steps=2, last=False, width=112, height=64) -> DenoiseInputs:
    from PIL import Image

    def fitted(path):
        return fit_to_size(Image.open(path).convert("RGB"), width, height)

    return DenoiseInputs(image=fitted(pictures["first"]), prompt="leaves falling", negative_prompt="", width=width,
                         height=height, frames=9, steps=steps, guidance=3.5, fps=16, seed=11,
                         last_image=fitted(pictures["last"]) if last else None)


def test_a14b_last_frame_matches_the_pipeline_called_as_documented(pictures):
    backend = TinyWan22A14BBackend()
    backend.load(CPU_FP32)
    inputs = _inputs(pictures, last=True)
    ours = backend.decode(backend.denoise(inputs, lambda *_: None), CPU_FP32)
    theirs = backend.pipeline(image=inputs.image, last_image=inputs.last_image, prompt="leaves falling", height=64,
                              width=112, num_frames=9, num_inference_steps=2, guidance_scale=3.5,
                              guidance_scale_2=3.5, output_type="pt",
                              generator=torch.Generator("cpu").manual_seed(11)).frames
    assert ours.shape == (1, 3, 9, 64, 112)
    assert torch.allclose((ours / 2 + 0.5).clamp(0, 1), theirs.permute(0, 2, 1, 3, 4), atol=1e-6)
    without = backend.decode(backend.denoise(_inputs(pictures), lambda *_: None), CPU_FP32)
    assert not torch.equal(ours, without)  # the last frame conditions the run


def test_ti2v_frames_match_the_pipeline_called_as_documented(pictures):
    from i2v.backends.wan22.tiny import TinyWan22TI2VBackend

    backend = TinyWan22TI2VBackend()
    backend.load(CPU_FP32)
    inputs = _inputs(pictures, width=96, height=64)
    ours = backend.decode(backend.denoise(inputs, lambda *_: None), CPU_FP32)
    theirs = backend.pipeline(image=inputs.image, prompt="leaves falling", height=64, width=96, num_frames=9,
                              num_inference_steps=2, guidance_scale=3.5, output_type="pt",
                              generator=torch.Generator("cpu").manual_seed(11)).frames
    assert ours.shape == (1, 3, 9, 64, 96)
    assert torch.allclose((ours / 2 + 0.5).clamp(0, 1), theirs.permute(0, 2, 1, 3, 4), atol=1e-6)


# -- a last frame where the model takes none: one clear error, no file ----------------------------------------
def test_engine_refuses_a_last_frame_for_a_model_without_one_and_writes_nothing(pictures, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    for model in (TINY_TI2V_NAME, "tiny-wan"):
        request = GenerationRequest(image=pictures["first"], prompt=PROMPT, model=model, frames=5, steps=1,
                                    last_image=pictures["last"])
        with pytest.raises(BadInputError, match=rf"does not take a last frame.*{A14B_ID}, {TINY_A14B_NAME}"):
            engine.generate(request)
    assert _files(tmp_path / "out") == []


def test_cli_refuses_a_last_frame_with_one_line_and_no_file(pictures, tmp_path, capsys):
    out = tmp_path / "never.mp4"
    status = main(["generate", "--model", TINY_TI2V_NAME, "--image", str(pictures["first"]), "--prompt", PROMPT,
                   "--last-image", str(pictures["last"]), "--output", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and "does not take a last frame" in err and TINY_A14B_NAME in err
    assert "Traceback" not in err and _files(tmp_path) == []


def test_the_job_api_refuses_a_last_frame_before_keeping_any_picture(pictures, tmp_path):
    from i2v.service.jobs import JobManager

    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out"))
    request = GenerationRequest(image=pictures["first"], prompt=PROMPT, model=TINY_TI2V_NAME,
                                last_image=pictures["last"])
    with pytest.raises(BadInputError, match=rf"Wan 2\.2 TI2V-5B.*does not take a last frame.*{TINY_A14B_NAME}"):
        jobs.submit(request)
    assert [p for p in _files(tmp_path / "out") if p.name != "jobs.sqlite3"] == []
    assert jobs.history(10) == []


# -- the page: the twins generate there, and the last-frame control follows the model ---------------------------

@pytest.fixture(scope="module")
def wan22_app(tmp_path_factory):
    from web_support import running_app

    outputs = tmp_path_factory.mktemp("wan22-page-outputs")
    with running_app(outputs, model=TINY_TI2V_NAME) as server:
        yield server, outputs


def _choose_model(page, name: str, family: str) -> None:
    page.click("#model input")
    page.get_by_role("option", name=f"{name} — {family}").click()
    page.wait_for_function(f"document.querySelector('#model-banner')?.innerText.includes('{name}')")


def _generate_16_frames(page) -> None:
    """Frames 16 (snapped to 17 with a notice), 2 steps, then wait for the finished job's video."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    field = page.locator("#frames input[type=number]")
    if not field.is_visible():
        page.click("#advanced button")
        field.wait_for(state="visible")
    # The verdict names the snap ("16 frames changed to 17"), so it shows only once the typed 16 reached the server.
    # A value typed while the just-opened accordion mounts its inputs can be reset by the mount: type it again.
    for attempt in range(3):
        field.fill("16")
        field.press("Enter")
        steps = page.locator("#steps input[type=number]")
        steps.fill("2")
        steps.press("Enter")
        try:
            page.wait_for_function("(t => t.includes('17 frames, 2 steps') && t.includes('16 frames changed to 17'))"
                                   "(document.querySelector('#plan-verdict')?.innerText ?? '')", timeout=20_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    before = page.get_attribute("#job-status [data-state]", "data-job")  # None before the first job
    page.click("#generate")
    page.wait_for_function(f"(el => el && el.dataset.job && el.dataset.job !== {json.dumps(before)})"
                           "(document.querySelector('#job-status [data-job]'))")
    job = page.get_attribute("#job-status [data-state]", "data-job")
    page.wait_for_selector(f"#job-status [data-job='{job}'][data-state=done], "
                           f"#job-status [data-job='{job}'][data-state=failed]")
    assert page.get_attribute("#job-status [data-state]", "data-state") == "done", page.inner_text("#job-status")
    page.wait_for_selector("#video-0 video")


def test_the_twins_generate_from_the_page_and_the_last_frame_control_follows_the_model(browser, wan22_app,
                                                                                         pictures):
    server, outputs = wan22_app
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.wait_for_selector("#plan-verdict [data-verdict]")
    assert not page.locator("#last-image").is_visible()  # TI2V-5B takes no last frame
    page.set_input_files("#input-image input[type=file]", str(pictures["first"]))
    page.locator("#prompt textarea").fill(PROMPT)
    _generate_16_frames(page)
    assert "17 frames" in page.inner_text("#caption-0") and "16 frames changed to 17" in page.inner_text(
        "#job-findings")

    _choose_model(page, TINY_A14B_NAME, TINY_A14B_SPEC.family)
    page.wait_for_selector("#last-image", state="visible")
    page.set_input_files("#last-image input[type=file]", str(pictures["last"]))
    _generate_16_frames(page)
    records = {json.loads(p.read_text())["params"]["model"]: json.loads(p.read_text())
               for p in outputs.glob("*/*.json")}
    for name, fps in ((TINY_TI2V_NAME, 24), (TINY_A14B_NAME, 16)):
        assert records[name]["params"]["frames"] == 17 and records[name]["params"]["fps"] == fps
        assert any(n["code"] == "frames.snapped" for n in records[name]["notices"])
    assert records[TINY_A14B_NAME]["params"]["last_image_sha256"] is not None
    assert records[TINY_TI2V_NAME]["params"]["last_image_sha256"] is None
    _choose_model(page, TINY_TI2V_NAME, TINY_TI2V_SPEC.family)  # back: the control hides again
    page.wait_for_selector("#last-image", state="hidden")


def test_the_generate_api_takes_a_last_frame_for_a14b_and_refuses_it_elsewhere(wan22_app, pictures):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    server, outputs = wan22_app
    client = Client(server.url, verbose=False)
    try:
        before = _files(outputs)
        with pytest.raises(AppError, match=rf"does not take a last frame.*{TINY_A14B_NAME}"):
            client.predict(handle_file(str(pictures["first"])), PROMPT, frames=5, steps=1, model=TINY_TI2V_NAME,
                           last_image=handle_file(str(pictures["last"])), api_name="/generate")
        assert [p for p in _files(outputs) if p.name != "jobs.sqlite3"] == [
            p for p in before if p.name != "jobs.sqlite3"]  # nothing kept, nothing written
        _video, files, result = client.predict(handle_file(str(pictures["first"])), PROMPT, frames=5, steps=1,
                                               model=TINY_A14B_NAME, last_image=handle_file(str(pictures["last"])),
                                               api_name="/generate")
        record = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
        assert record["params"]["last_image_sha256"] is not None and result["params"]["frames"] == 5
    finally:
        client.close()
