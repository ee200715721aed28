"""Preset tiers: the shipped files, strict validation of broken ones, and how presets merge with a request."""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from i2v.errors import BadInputError, DataFileError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.paths import presets_dir
from i2v.planning.plan import BasicPlanner
from i2v.backends import registered_specs
from i2v.engine.presets import get_preset, load_preset_file, load_presets, presets_for_model
from i2v.engine.request import GenerationRequest
from i2v.engine.resolve import prepare

SHIPPED = presets_dir() / "tiers"

# name: (resolution, frames, steps, guidance, fps)
EXPECTED = {
    "fast-check": (512, 8, 30, 9.0, 8),
    "balanced": (512, 16, 50, 9.0, 8),
    "high-quality": (768, 24, 80, 9.0, 8),
}


# -- the shipped presets ---------------------------------------------------------------------------------


def test_shipped_presets_load_in_order_with_the_documented_values():
    presets = load_presets()
    assert list(presets) == ["fast-check", "balanced", "high-quality", "turbo"]
    assert presets["turbo"].models_only and not presets["balanced"].models_only
    for name, (resolution, frames, steps, guidance, fps) in EXPECTED.items():
        preset = presets[name]
        assert preset.name == name
        assert (preset.resolution, preset.frames, preset.steps, preset.fps) == (resolution, frames, steps, fps)
        assert preset.guidance == guidance and isinstance(preset.guidance, float)
        assert isinstance(preset.frames, int) and isinstance(preset.steps, int)
        assert preset.label.strip() and preset.description.strip()


def test_the_turbo_tier_is_offered_only_to_models_with_a_step_distilled_lora():
    presets = load_presets()
    assert "turbo" in presets_for_model(presets, "wan") and "turbo" in presets_for_model(presets, "tiny-wan")
    assert "turbo" not in presets_for_model(presets, "i2vgen-xl")
    assert "turbo" not in presets_for_model(presets, "cogvideox")
    wan_turbo = get_preset("turbo", presets, preset_key="wan")
    assert (wan_turbo.steps, wan_turbo.guidance, wan_turbo.flow_shift) == (4, 1.0, 5.0)
    assert wan_turbo.lora.endswith("lightx2v_4step.safetensors")
    with pytest.raises(BadInputError, match=r"turbo tier is not offered for this model.*fast-check, balanced"):
        get_preset("turbo", presets, preset_key="cogvideox")


def test_ltx2s_high_quality_is_two_stages_and_its_turbo_the_distilled_schedule():
    presets = load_presets()
    high = get_preset("high-quality", presets, preset_key="ltx2")
    assert high.two_stage and high.upsampler == "Lightricks/LTX-2/latent_upsampler"
    assert high.refine_lora == "Lightricks/LTX-2/ltx-2-19b-distilled-lora-384.safetensors"
    assert not get_preset("balanced", presets, preset_key="ltx2").two_stage
    turbo = get_preset("turbo", presets, preset_key="ltx2")
    assert (turbo.steps, turbo.guidance, turbo.sigmas, turbo.lora) == (
        8, 1.0, "distilled", "Lightricks/LTX-2/ltx-2-19b-distilled-lora-384.safetensors")
    assert get_preset("turbo", presets, preset_key="tiny-ltx2").sigmas == "distilled"


def test_a_refinement_lora_without_an_upsampler_is_refused(tmp_path):
    path = _broken_copy(tmp_path, lambda text: text.replace("[models.ltx2]\n",
                                                            '[models.ltx2]\nrefine_lora = "x.safetensors"\n'))
    with pytest.raises(DataFileError, match=r"models\.ltx2\.refine_lora: only a two-stage tier"):
        load_preset_file(path)


def test_get_preset_returns_the_shipped_preset():
    assert get_preset("high-quality").frames == 24
    assert get_preset("fast-check").steps == 30


def test_unknown_preset_name_lists_the_available_ones():
    with pytest.raises(BadInputError) as info:
        get_preset("nope")
    message = str(info.value)
    assert "nope" in message
    for name in EXPECTED:
        assert name in message


# -- broken preset files ---------------------------------------------------------------------------------


def _broken_copy(tmp_path: Path, edit) -> Path:
    """A copy of the shipped fast-check preset in its own folder, changed by ``edit(text) -> text``."""
    folder = tmp_path / "tiers"
    folder.mkdir()
    target = folder / "fast-check.toml"
    text = (SHIPPED / "fast-check.toml").read_text(encoding="utf-8")
    changed = edit(text)
    assert changed != text, "the edit did not change the preset file"
    target.write_text(changed, encoding="utf-8")
    return target


def _set(key: str, value: str):
    return lambda text: re.sub(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)


def _drop(key: str):
    return lambda text: re.sub(rf"(?m)^{key}\s*=.*\n", "", text)


@pytest.mark.parametrize(
    "edit, key",
    [
        pytest.param(lambda text: text + "framez = 8\n", "framez", id="unknown-key"),
        pytest.param(_set("frames", "0"), "frames", id="frames-zero"),
        pytest.param(_set("steps", "9999"), "steps", id="steps-too-many"),
        pytest.param(_set("guidance", "nan"), "guidance", id="guidance-nan"),
        pytest.param(_set("guidance", "-1.0"), "guidance", id="guidance-negative"),
        pytest.param(_set("frames", '"eight"'), "frames", id="frames-string"),
        pytest.param(_set("frames", "8.5"), "frames", id="frames-fraction"),
        pytest.param(_set("resolution", "true"), "resolution", id="resolution-bool"),
        pytest.param(_set("label", '""'), "label", id="label-empty"),
        pytest.param(_drop("steps"), "steps", id="steps-missing"),
        pytest.param(_drop("order"), "order", id="order-missing"),
    ],
)
def test_broken_preset_names_file_and_key(tmp_path, edit, key):
    path = _broken_copy(tmp_path, edit)
    with pytest.raises(DataFileError) as info:
        load_preset_file(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    # The same problem is reported when the whole folder is loaded, as at start-up.
    with pytest.raises(DataFileError) as info:
        load_presets(path.parent)
    assert str(path) in str(info.value) and key in str(info.value)


def test_preset_with_toml_syntax_error_names_the_file(tmp_path):
    path = _broken_copy(tmp_path, lambda text: text.replace("frames = 8", "frames = = 8"))
    with pytest.raises(DataFileError) as info:
        load_presets(path.parent)
    message = str(info.value)
    assert str(path) in message
    assert "TOML" in message
    assert "line" in message  # where in the file, from the TOML parser


def test_preset_folder_without_presets_is_named(tmp_path):
    empty = tmp_path / "no-presets"
    empty.mkdir()
    (empty / "readme.txt").write_text("not a preset")
    with pytest.raises(DataFileError) as info:
        load_presets(empty)
    assert str(empty) in str(info.value)


def test_integer_guidance_in_a_preset_is_accepted_as_float(tmp_path):
    path = _broken_copy(tmp_path, _set("guidance", "7"))
    preset = load_preset_file(path)
    assert preset.guidance == 7.0 and isinstance(preset.guidance, float)


# -- presets merged into a request -----------------------------------------------------------------------


def _prepare(photo_path, model="ali-vilab/i2vgen-xl", **changes):
    # The real I2VGen-XL (planned, never loaded): its tiers are the files' top-level values.
    request = GenerationRequest(image=photo_path, prompt="a sailboat drifting slowly to the left", model=model)
    return prepare(request.with_changes(**changes), BasicPlanner(FixedGpuInfo.none()))


def test_explicit_parameter_overrides_preset_and_the_rest_comes_from_it(photo_path):
    job = _prepare(photo_path, preset="fast-check", frames=4)
    assert job.params.frames == 4
    assert job.params.steps == 30
    assert job.params.fps == 8
    assert job.params.guidance == 9.0
    assert job.params.resolution == 512
    assert not [n for n in job.notices if n.code == "frames.snapped"]


def test_explicit_steps_and_guidance_override_preset(photo_path):
    job = _prepare(photo_path, preset="high-quality", steps=40, guidance=6.5)
    assert (job.params.steps, job.params.guidance) == (40, 6.5)
    assert job.params.frames == 24


def test_no_preset_uses_balanced_values(photo_path):
    job = _prepare(photo_path)
    assert (job.params.frames, job.params.steps, job.params.guidance, job.params.fps) == (16, 50, 9.0, 8)
    assert job.params.resolution == 512
    area = job.params.width * job.params.height
    assert abs(area - 512 * 512) <= 0.15 * 512 * 512


def test_high_quality_preset_on_i2vgen_xl(photo_path):
    job = _prepare(photo_path, preset="high-quality")
    params = job.params
    assert (params.frames, params.steps) == (24, 80)
    assert params.resolution == 768
    assert params.width % 64 == 0 and params.height % 64 == 0
    assert abs(params.width * params.height - 768 * 768) <= 0.15 * 768 * 768
    # The photo is 320×256 (5:4); the video keeps roughly that shape.
    assert math.isclose(params.width / params.height, 320 / 256, rel_tol=0.1)
    assert job.image.size == (params.width, params.height)


def test_unknown_preset_in_a_request_is_bad_input(photo_path):
    with pytest.raises(BadInputError, match="balanced"):
        _prepare(photo_path, preset="ultra")


def test_custom_preset_folder_is_used_by_prepare(tmp_path, photo_path):
    folder = tmp_path / "mine"
    shutil.copytree(SHIPPED, folder)
    balanced = folder / "balanced.toml"
    balanced.write_text(_set("frames", "12")(balanced.read_text(encoding="utf-8")), encoding="utf-8")
    presets = load_presets(folder)
    request = GenerationRequest(image=photo_path, prompt="waves rolling in", model="tiny", preset="balanced")
    job = prepare(request, BasicPlanner(FixedGpuInfo.none()), presets=presets)
    assert job.params.frames == 12
    assert job.params.steps == 50


# -- per-model values ------------------------------------------------------------------------------------


def test_cogvideox_tiers_use_its_own_trained_values():
    for name, (frames, steps) in {"fast-check": (25, 30), "balanced": (49, 50), "high-quality": (49, 80)}.items():
        preset = get_preset(name, preset_key="cogvideox")
        assert (preset.resolution, preset.frames, preset.steps, preset.guidance) == (480, frames, steps, 6.0)
        assert "720×480" in preset.description
    # I2VGen-XL keeps the top-level values.
    assert get_preset("balanced", preset_key="i2vgen-xl").frames == 16


@pytest.mark.parametrize("tier", ["fast-check", "balanced", "high-quality"])
def test_tiny_tiers_are_i2vgen_xl_tiers_at_a_toy_size_and_say_so(tier, photo_path):
    """tiny is for trying the app on a CPU: each tier keeps I2VGen-XL's frames and steps at a toy size, and its
    description (what the page and the CLI show) says so."""
    full, toy = get_preset(tier, preset_key="i2vgen-xl"), get_preset(tier, preset_key="tiny")
    assert (toy.frames, toy.steps, toy.guidance, toy.fps) == (full.frames, full.steps, full.guidance, full.fps)
    assert toy.resolution <= 128 < full.resolution
    assert "Toy size" in toy.description and "output is noise" in toy.description
    params = _prepare(photo_path, model="tiny", preset=tier).params
    assert params.width * params.height <= 1.15 * 128 * 128


@pytest.mark.parametrize("spec", registered_specs(), ids=lambda spec: spec.family)
def test_every_tier_is_valid_for_every_model_without_a_change(spec):
    """A preset the model would refuse or silently reshape is a broken preset: each tier must fit as it is."""
    for preset in presets_for_model(load_presets(), spec.preset_key).values():
        values = preset
        assert values.resolution in spec.resolution_tiers, (spec.family, preset.name)
        frames, notices = spec.snap_frames(values.frames)
        assert (frames, notices) == (values.frames, []), (spec.family, preset.name)
        assert spec.steps_range[0] <= values.steps <= spec.steps_range[1]
        assert spec.guidance_range[0] <= values.guidance <= spec.guidance_range[1]
        assert spec.fps_range[0] <= values.fps <= spec.fps_range[1]


def test_a_request_takes_the_tier_values_for_its_model(photo_path):
    job = prepare(GenerationRequest(image=photo_path, prompt="waves", model="tiny-cogvideox", preset="high-quality"),
                  BasicPlanner(FixedGpuInfo.none()))
    assert (job.params.frames, job.params.steps, job.params.guidance) == (25, 12, 6.0)
    assert "frames.snapped" not in [n.code for n in job.notices]


def _with_models_table(table: str):
    return lambda text: text + "\n" + table + "\n"


@pytest.mark.parametrize("table, key", [
    ("[models.cogvidex]\nframes = 49", "models.cogvidex"),  # a typo in the model key
    ("[models.i2vgen-xl]\nframe = 49", "models.i2vgen-xl.frame"),
    ("[models.i2vgen-xl]\nframes = 4.5", "models.i2vgen-xl.frames"),
    ("[models.i2vgen-xl]\nsteps = 0", "models.i2vgen-xl.steps"),
    ("[models.i2vgen-xl]\ndescription = ''", "models.i2vgen-xl.description"),
    ("models = 3", "models"),
])
def test_broken_model_table_names_file_and_key(tmp_path, table, key):
    target = _broken_copy(tmp_path, _with_models_table(table))
    with pytest.raises(DataFileError) as info:
        load_preset_file(target)
    assert str(target) in str(info.value) and f"{key}:" in str(info.value)
