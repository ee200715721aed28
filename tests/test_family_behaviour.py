"""The behaviour every model family shares, run on each family's tiny model (real classes, random weights, saved
with ``save_pretrained`` and loaded back through the real folder loader). A family supplies a ``FamilyCase``
(``family_suite.py``); its own test file keeps only its own rules.

The three ordinary generations each family needs are made once per family (``runs``) and shared by the tests that
only read them; tests that break something (cancel, NaN) make their own engine."""
from __future__ import annotations

import itertools
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import photo_like
from family_suite import FAMILIES, FamilyCase
from i2v.backends import backend_for
from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.engine.progress import CancelToken, ProgressEvent
from i2v.engine.request import GenerationRequest
from i2v.engine.run import GenerationResult
from i2v.engine.video import probe_mp4
from i2v.errors import JobCancelled, ModelLoadError, NonFiniteOutputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import ExecutionPlan
from test_numeric_safety import nan_output

CPU_FP32 = ExecutionPlan(device="cpu", dtype="float32", decode_chunk_size=8)
CPU_BF16 = ExecutionPlan(device="cpu", dtype="bfloat16", decode_chunk_size=8)
SEED, OTHER_SEED = 7, 8


@pytest.fixture(scope="module", params=FAMILIES, ids=str)
def case(request) -> FamilyCase:
    return request.param


@pytest.fixture(autouse=True)
def _known_bug_is_an_expected_failure(case, request):
    reason = case.known_bugs.get(request.node.originalname)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))


def test_every_known_bug_names_a_test_of_this_suite(case):
    assert set(case.known_bugs) <= {name for name in globals() if name.startswith("test_")}


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("picture") / "input.png"
    photo_like(320, 256).save(path)  # 1.25:1, as conftest's photo_path
    return path


def make_request(case: FamilyCase, image: Path, **changes) -> GenerationRequest:
    fields = dict(image=image, prompt="waves crashing, camera panning left", model=case.model,
                  frames=case.asked_frames, steps=2, seeds=(SEED,), **case.request_fields)
    fields.update(changes)
    return GenerationRequest(**fields)


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@dataclass
class Runs:
    """A family's ordinary generations, made once: the first (with its progress events), the same request again,
    and the same request with another seed."""

    first: GenerationResult
    events: list[ProgressEvent]
    again: GenerationResult
    other_seed: GenerationResult


@pytest.fixture(scope="module")
def runs(case, picture, tmp_path_factory) -> Runs:
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path_factory.mktemp(f"{case.id}-outputs"))
    events: list[ProgressEvent] = []
    first = engine.generate(make_request(case, picture), on_progress=events.append)
    again = engine.generate(make_request(case, picture))
    other_seed = engine.generate(make_request(case, picture, seeds=(OTHER_SEED,)))
    return Runs(first, events, again, other_seed)


def digest(result: GenerationResult) -> str:
    return result.videos[0].record["video"]["frames_sha256"]


# -- loading -----------------------------------------------------------------------------------------------
def test_the_saved_model_loads_through_the_folder_loader_with_no_weight_key_findings(case):
    folder = case.saved_folder()
    backend = backend_for(str(folder))  # routed by model_index.json's pipeline class, as any folder is
    assert type(backend) is case.folder_backend
    backend.spec = case.spec  # a folder gets the real model's spec; this one is the tiny build
    report = backend.load(CPU_FP32)
    assert report.source == "folder" and report.warnings == ()
    assert case.components.items() <= report.components.items()
    built = case.build_pipeline()
    for name in report.components:
        if not isinstance(getattr(built, name), torch.nn.Module):
            continue
        loaded = getattr(backend.pipeline, name).state_dict()
        for key, value in getattr(built, name).state_dict().items():
            # Cast as the loader casts (CogVideoX builds its positional-embedding buffer in float64).
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), f"{name}.{key} changed in the round trip"
    assert backend.pipeline.tokenizer("waves").input_ids == built.tokenizer("waves").input_ids


def test_missing_and_unexpected_weight_keys_are_reported_by_the_loader(case, tmp_path):
    """The positive control of the test above: the same loader does report a damaged checkpoint."""
    damaged = shutil.copytree(case.saved_folder(), tmp_path / "damaged")
    weights = damaged / case.denoiser / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    removed = sorted(state)[0]
    del state[removed]
    state["leftover.from.another.model"] = torch.zeros(2)
    save_file(state, weights, metadata={"format": "pt"})
    backend = case.folder_backend(str(damaged))
    backend.spec = case.spec
    found = {w.code: w.message for w in backend.load(CPU_FP32).warnings}
    assert {"model.missing_keys", "model.unexpected_keys"} <= set(found)
    assert found["model.missing_keys"].startswith(f"{case.denoiser}:") and removed in found["model.missing_keys"]
    assert "leftover.from.another.model" in found["model.unexpected_keys"]


def test_the_built_in_tiny_model_has_nothing_to_download(case, capsys):
    assert main(["download", case.model]) == 2
    assert "is not a hub model" in capsys.readouterr().err


def test_vae_and_denoiser_channels_that_do_not_fit_are_refused_at_load_naming_both(case, tmp_path):
    broken = tmp_path / "mismatched"
    case.write_mismatched_channels(broken)
    backend = case.folder_backend(str(broken))
    backend.spec = case.spec
    with pytest.raises(ModelLoadError, match=case.channel_error):
        backend.load(CPU_FP32)


# -- generating --------------------------------------------------------------------------------------------
def test_a_short_video_is_written_with_the_asked_shape_in_its_record_and_its_mp4(case, runs):
    video = runs.first.videos[0]
    record = video.record
    width, height = case.size
    assert (record["video"]["frames"], record["video"]["width"], record["video"]["height"]) == (
        case.made_frames, width, height)
    assert record["video"]["fps"] == case.fps and record["params"]["frames"] == case.made_frames
    assert json.loads(video.sidecar_path.read_text()) == record
    probe = probe_mp4(video.path)
    assert (probe["frames"], probe["size"], probe["fps"]) == (case.made_frames, (width, height), case.fps)
    model = record["model"]
    assert model["source"] == "built-in" and model["random_weights"] is True
    assert case.components.items() <= model["components"].items()
    assert any(w["code"] == "model.random_weights" for w in record["model_warnings"])
    assert [(e.step, e.total_steps) for e in runs.events if e.stage == "denoise"] == [(1, 2), (2, 2)]


def test_a_frame_count_off_the_family_rule_is_snapped_with_a_notice(case, runs, picture):
    notices = [n for n in runs.first.videos[0].record["notices"] if n["code"].startswith("frames.")]
    engine = Engine(gpu_info=FixedGpuInfo.none())  # prepare only: nothing is loaded
    if case.frame_rule is None:
        # Any count is valid: none is changed, and nothing is said about it.
        assert notices == [] and runs.first.videos[0].record["video"]["frames"] == case.asked_frames
        for frames in (7, 16, 17):
            job = engine.prepare(make_request(case, picture, frames=frames))
            assert job.params.frames == frames and not [n for n in job.notices if n.code.startswith("frames.")]
        return
    assert [n["code"] for n in notices] == ["frames.snapped"]
    assert f"{case.asked_frames} frames changed to {case.made_frames}" in notices[0]["message"]
    assert case.frame_rule in notices[0]["message"]
    job = engine.prepare(make_request(case, picture, frames=16))  # the example every DiT rule shares
    snapped = [n for n in job.notices if n.code == "frames.snapped"]
    assert job.params.frames == 17 and "16 frames changed to 17" in snapped[0].message
    assert case.frame_rule in snapped[0].message


def test_the_same_seed_gives_the_same_frames_and_another_seed_other_frames(case, runs):
    assert digest(runs.first) == digest(runs.again)
    assert digest(runs.other_seed) != digest(runs.first)
    assert runs.other_seed.videos[0].record["params"]["seed"] == OTHER_SEED


def test_cancel_during_denoising_stops_the_pipeline_and_writes_nothing(case, picture, tmp_path):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    token = CancelToken()
    steps = []

    def cancel_after_first_step(event):
        if event.stage == "denoise":
            steps.append(event.step)
            token.cancel()

    with pytest.raises(JobCancelled):
        engine.generate(make_request(case, picture, steps=3), on_progress=cancel_after_first_step, cancel=token)
    assert steps == [1]  # the step callback's exception left the pipeline's loop at once
    assert files_in(tmp_path / "out") == []


# -- NaN ---------------------------------------------------------------------------------------------------
def tensors_of(pipe, *, buffers: bool = True) -> dict[str, torch.Tensor]:
    """Every parameter (and buffer, non-persistent ones such as rotary tables included) of every model in the
    pipeline, by component-qualified name."""
    found = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            tensors = itertools.chain(component.named_parameters(), component.named_buffers() if buffers else ())
            found.update({f"{name}.{key}": tensor.detach().clone() for key, tensor in tensors})
    return found


def parameter_dtypes(pipe) -> dict[str, torch.dtype]:
    return {name: tensor.dtype for name, tensor in tensors_of(pipe, buffers=False).items()}


@pytest.fixture
def bf16_engine(case, picture, tmp_path) -> Engine:
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "out")
    engine.load(make_request(case, picture, dtype="bfloat16"))
    return engine


def test_nan_in_the_bf16_denoiser_is_retried_in_fp32_and_the_model_goes_back_to_bf16(case, picture, bf16_engine):
    pipe = bf16_engine.backend.pipeline
    planned = parameter_dtypes(pipe)
    poisoned = case.nan_module(pipe)
    with nan_output(poisoned, only_dtype=torch.bfloat16) as calls:
        result = bf16_engine.generate(make_request(case, picture, dtype="bfloat16"))
    assert calls["n"] == case.nan_calls_per_step  # stopped at the first bad step, not denoised to the end
    video = result.videos[0]
    assert video.record["plan"]["dtype_used"] == "float32" and video.record["params"]["dtype"] == "float32"
    assert any(n["code"] == "numerics.run_retried" and "float32" in n["message"] for n in video.record["notices"])
    assert video.path.exists() and probe_mp4(video.path)["frames"] == case.made_frames
    # Back in the planned precision for the next job: bf16, and float32 where the loader keeps it (Wan's VAE).
    assert next(poisoned.parameters()).dtype == torch.bfloat16
    assert parameter_dtypes(bf16_engine.backend.pipeline) == planned


@pytest.mark.parametrize("switch", ["retry", "next_job"])
def test_a_precision_switch_leaves_every_tensor_as_a_fresh_load_in_that_precision(case, switch):
    """The NaN retry casts the resident model to float32 and back (``set_dtype``); a next job in another precision
    casts it in place (``load``). Either way the model must equal a fresh load in that precision: a tensor the loader
    keeps in float32 (a rotary table, a VAE) rounded to bf16 for good makes every later run differ from a fresh
    one with the same seed."""
    fresh = backend_for(case.model)
    fresh.load(CPU_BF16)
    expected = tensors_of(fresh.pipeline)
    fresh.unload()
    backend = backend_for(case.model)
    if switch == "retry":
        backend.load(CPU_BF16)
        backend.set_dtype("float32")
        backend.set_dtype("bfloat16")
    else:
        backend.load(CPU_FP32)
        backend.load(CPU_BF16)
    found = tensors_of(backend.pipeline)
    assert found.keys() == expected.keys()
    changed = [f"{k}: {expected[k].dtype} -> {found[k].dtype}" for k in expected
               if found[k].dtype != expected[k].dtype or not torch.equal(found[k], expected[k])]
    assert changed == []


def test_nan_from_the_vae_in_every_precision_fails_clearly_and_writes_no_black_video(case, picture, bf16_engine):
    pipe = bf16_engine.backend.pipeline
    with nan_output(pipe.vae.decoder), pytest.raises(NonFiniteOutputError, match=re.escape("no video was written")):
        bf16_engine.generate(make_request(case, picture, dtype="bfloat16"))
    assert files_in(bf16_engine.output_dir) == []
