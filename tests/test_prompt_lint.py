"""Prompt linter and motion keyword library: what a user typing a prompt would notice."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from i2v.errors import DataFileError
from i2v.guidance.prompt_lint import (
    CLIP_MAX_TOKENS,
    KEYWORD_FILE_NAME,
    KeywordLibrary,
    estimate_clip_tokens,
    lint_prompt,
    load_keyword_library,
)
from i2v.paths import presets_dir

GOOD_PROMPT = "a red fox walking slowly through snow, snow falling, camera panning left"
SHIPPED_FILE = presets_dir() / KEYWORD_FILE_NAME


@pytest.fixture(scope="module")
def library() -> KeywordLibrary:
    return load_keyword_library()


def codes(prompt: str, library: KeywordLibrary, negative_prompt: str = "") -> list[str]:
    return [finding.code for finding in lint_prompt(prompt, negative_prompt, library)]


def long_prompt(word_count: int) -> str:
    words = "a fox walking slowly through deep fresh snow under tall pine trees".split()
    return " ".join(words[i % len(words)] for i in range(word_count))


# --- findings a user sees -------------------------------------------------------------------


def test_good_prompt_has_no_findings(library):
    assert lint_prompt(GOOD_PROMPT, library=library) == []


def test_empty_prompt_is_reported_gently_and_alone(library):
    for prompt in ("", "   ", "\n\t"):
        findings = lint_prompt(prompt, library=library)
        assert [f.code for f in findings] == ["prompt.empty"]
        assert "Try:" in findings[0].hint


def test_abstract_only_prompt(library):
    findings = lint_prompt("beautiful cinematic masterpiece, 4k", library=library)
    # no_action is deliberately not added on top: one problem, one finding.
    assert [f.code for f in findings] == ["prompt.abstract_only"]
    assert "beautiful" in findings[0].message
    assert "Try:" in findings[0].hint


@pytest.mark.parametrize("prompt", ["make it more dynamic", "a stunning award-winning high-quality video, 8k"])
def test_instructions_and_quality_phrases_count_as_abstract(library, prompt):
    assert codes(prompt, library) == ["prompt.abstract_only"]


def test_portrait_without_motion_has_no_action(library):
    findings = lint_prompt("a portrait of a man", library=library)
    assert [f.code for f in findings] == ["prompt.no_action"]
    # The suggestion extends the user's own prompt with a motion.
    assert "a portrait of a man, camera" in findings[0].hint


@pytest.mark.parametrize(
    "prompt",
    ["ocean waves", "a forest in fall", "a painting on the ceiling of a building", "a man sitting on a bench"],
)
def test_nouns_that_look_like_verbs_are_not_actions(library, prompt):
    assert "prompt.no_action" in codes(prompt, library)


@pytest.mark.parametrize(
    "prompt",
    [
        "a dog runs along the beach",
        "a river meandering slowly through a valley",
        "a girl waves at the camera slowly",
        "leaves fall gently in a park",
    ],
)
def test_actions_in_other_forms_are_recognised(library, prompt):
    assert codes(prompt, library) == []


def test_action_without_speed_or_direction_gets_mild_hint(library):
    findings = lint_prompt("a dog running on the beach", library=library)
    assert [f.code for f in findings] == ["prompt.no_direction"]
    assert "running slowly" in findings[0].hint


@pytest.mark.parametrize(
    ("prompt", "a", "b"),
    [
        ("zoom in and out simultaneously", "zoom in", "zoom out"),
        ("camera panning left and panning right", "panning left", "panning right"),
        ("camera zooming in and zooming out slowly", "zooming in", "zooming out"),
        ("tilting up and down", "tilting up", "tilting down"),
        ("a wheel rotating clockwise and anticlockwise", "clockwise", "anticlockwise"),
        ("static camera, camera panning left", "static camera", "camera panning"),
        ("waves crashing in slow motion, time-lapse", "slow motion", "time-lapse"),
        ("a city at day and night at the same time", "day", "night"),
    ],
)
def test_contradictions_name_both_terms(library, prompt, a, b):
    findings = [f for f in lint_prompt(prompt, library=library) if f.code == "prompt.contradiction"]
    assert len(findings) == 1
    assert f'"{a}"' in findings[0].message and f'"{b}"' in findings[0].message
    assert "because" in findings[0].message


@pytest.mark.parametrize(
    "prompt",
    [
        "day turning to night, time-lapse",
        "a city street from day to night, time-lapse",
        "camera zooming in slowly, then zooming out",
        "a wheel rotating counter-clockwise slowly",
        "camera panning from left to right",
        "a woman zooming into the distance on a bike",
    ],
)
def test_sequences_and_single_directions_are_not_contradictions(library, prompt):
    assert "prompt.contradiction" not in codes(prompt, library)


def test_too_long_prompt_reports_count_and_cut_off_word(library):
    findings = lint_prompt(long_prompt(80), library=library)
    assert findings[0].code == "prompt.too_long"
    count = int(re.search(r"(\d+) tokens", findings[0].message).group(1))
    assert count >= 78
    assert "truncates" in findings[0].message
    assert re.search(r"after about word \d+", findings[0].message)


def test_short_prompt_is_not_too_long(library):
    assert "prompt.too_long" not in codes(long_prompt(40), library)


def test_real_token_counter_is_used_when_given(library):
    def count_tokens(text: str) -> int:  # stands in for the loaded CLIP tokenizer
        return len(text.split()) * 2 + 2

    findings = lint_prompt(long_prompt(50), library=library, token_counter=count_tokens)
    assert findings[0].code == "prompt.too_long"
    assert "102 tokens" in findings[0].message and "about 102" not in findings[0].message
    # 37 words are 76 tokens, 38 words are 78: words after word 37 are cut off.
    assert "after about word 37" in findings[0].message
    assert lint_prompt(GOOD_PROMPT, library=library, token_counter=lambda text: CLIP_MAX_TOKENS) == []


def test_negation_is_moved_to_negative_prompt(library):
    findings = [f for f in lint_prompt("a cat, no blur", library=library) if f.code == "prompt.negation_in_prompt"]
    assert len(findings) == 1
    assert '"no blur"' in findings[0].message
    assert "negative prompt" in findings[0].hint and '"blur"' in findings[0].hint


def test_negation_hint_knows_the_negative_prompt(library):
    finding = lint_prompt("a cat sleeping, no blur", "blur, low quality", library)[0]
    assert finding.code == "prompt.negation_in_prompt"
    assert "already in the negative prompt" in finding.hint


@pytest.mark.parametrize(
    "prompt", ["a street without people", "a man standing, don't move", "a dog that isn\u2019t running"]
)
def test_other_negations(library, prompt):
    assert "prompt.negation_in_prompt" in codes(prompt, library)


@pytest.mark.parametrize("prompt", ["snow falling slowly on a notebook", "a knot in a rope swaying gently"])
def test_words_containing_no_or_not_are_not_negations(library, prompt):
    assert "prompt.negation_in_prompt" not in codes(prompt, library)


def test_findings_are_ordered_by_importance(library):
    prompt = "a cat, no blur, zoom in and out " + long_prompt(80)
    found = codes(prompt, library)
    assert found[:3] == ["prompt.too_long", "prompt.contradiction", "prompt.negation_in_prompt"]


def test_findings_are_deterministic(library):
    prompt = "beautiful day and night simultaneously, no people, zoom in and out, " + long_prompt(70)
    assert lint_prompt(prompt, library=library) == lint_prompt(prompt, library=library)


def test_every_finding_has_message_and_hint(library):
    prompts = ["", "beautiful 4k", "a portrait", "a dog running", "zoom in and out", "a cat, no blur", long_prompt(90)]
    for prompt in prompts:
        for finding in lint_prompt(prompt, library=library):
            assert finding.message.endswith(".") and finding.hint, finding


@pytest.mark.parametrize(
    "prompt", ["🔥🌊🎬", "🙂" * 500, "x" * 10_000, "word " * 2_000, "zoom in and out, " * 600]
)
def test_odd_and_huge_prompts_do_not_crash(library, prompt):
    findings = lint_prompt(prompt, library=library)
    assert isinstance(findings, list)
    assert all(len(f.message) < 500 for f in findings)


def test_default_library_is_used_when_none_given():
    assert lint_prompt(GOOD_PROMPT) == []


# --- keyword library and linter agree -------------------------------------------------------


def test_every_library_keyword_counts_as_an_action(library):
    for keyword in library.keywords:
        prompt = f"a person on a street, {keyword}"
        found = codes(prompt, library)
        assert "prompt.no_action" not in found, keyword
        assert "prompt.abstract_only" not in found, keyword
        assert "prompt.contradiction" not in found, keyword


def test_library_offers_the_documented_motions(library):
    assert set(library.categories) == {"camera", "nature", "living", "time"}
    expected = {
        "camera": {"panning left", "panning right", "tilting up", "tilting down", "zooming in", "zooming out",
                   "rotating", "dolly shot"},
        "nature": {"waves crashing", "leaves falling", "snow falling", "fire flickering"},
        "living": {"walking", "running", "turning head", "blinking", "breathing"},
        "time": {"in slow motion", "time-lapse", "gradually changing"},
    }
    for category_id, keywords in expected.items():
        assert keywords <= set(library.categories[category_id][1])


def test_to_dict_is_json_serialisable(library):
    data = json.loads(json.dumps(library.to_dict()))
    assert data["categories"]["camera"]["label"] == "Camera"
    assert "panning left" in data["categories"]["camera"]["keywords"]


# --- token estimate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", GOOD_PROMPT, "don't stop", "4k 8k 1080p", "a café in Zürich", "🔥🌊", long_prompt(80)]
)
def test_estimate_is_at_least_words_plus_special_tokens(text):
    assert estimate_clip_tokens(text) >= len(text.split()) + 2


def test_estimate_counts_long_words_as_several_tokens():
    assert estimate_clip_tokens("cat") == 3
    assert estimate_clip_tokens("supercalifragilistic") > 3


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_estimated_and_linted_without_crashing(text):
    assert estimate_clip_tokens(text) >= len(text.split()) + 2
    assert isinstance(lint_prompt(text), list)


# --- data file validation -------------------------------------------------------------------


def test_shipped_library_loads_and_default_is_cached():
    library = load_keyword_library(SHIPPED_FILE)
    assert library.keywords
    assert load_keyword_library() is load_keyword_library()


def test_presets_dir_override_is_honoured(tmp_path, monkeypatch):
    text = SHIPPED_FILE.read_text(encoding="utf-8").replace('label = "Camera"', 'label = "Kamera"')
    (tmp_path / KEYWORD_FILE_NAME).write_text(text, encoding="utf-8")
    monkeypatch.setenv("I2V_PRESETS_DIR", str(tmp_path))
    assert load_keyword_library().categories["camera"][0] == "Kamera"


def _break(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _drop_camera_keywords(text: str) -> str:
    broken, replaced = re.subn(r'(label = "Camera"\n)keywords = \[.*?\]\n', r"\1", text, count=1, flags=re.S)
    assert replaced == 1
    return broken


BROKEN_COPIES = {
    "unknown top-level key": (lambda t: 'colour = "red"\n' + t, "colour"),
    "unknown category key": (lambda t: _break(t, 'label = "Camera"', 'label = "Camera"\nkeywrds = ["x"]'),
                             "categories.camera.keywrds"),
    "empty keyword": (lambda t: _break(t, '"panning left",', '"  ",'), "categories.camera.keywords[0]"),
    "duplicate keyword": (lambda t: _break(t, '"panning right",', '"Panning Left",'), "categories.camera.keywords[1]"),
    "wrong type": (lambda t: _break(t, 'label = "Camera"', "label = 3"), "categories.camera.label"),
    "keywords not an array": (lambda t: _drop_camera_keywords(t).replace(
        'label = "Camera"\n', 'label = "Camera"\nkeywords = "panning left"\n', 1), "categories.camera.keywords"),
    "missing keywords": (_drop_camera_keywords, "categories.camera.keywords"),
    "unknown lint key": (lambda t: _break(t, "[lint]\n", "[lint]\nstop_words = []\n"), "lint.stop_words"),
    "unknown contradiction key": (lambda t: _break(t, 'b = "zoom out"', 'b = "zoom out"\nc = "zoom"'),
                                  "lint.contradictions[0].c"),
    "contradiction flag wrong type": (lambda t: _break(t, "simultaneous_only = true", 'simultaneous_only = "yes"'),
                                      "simultaneous_only"),
    "TOML syntax error": (lambda t: _break(t, 'label = "Camera"', 'label = "Camera'), "line"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_COPIES))
def test_broken_library_names_file_and_key(tmp_path, case):
    make_broken, key = BROKEN_COPIES[case]
    path = tmp_path / KEYWORD_FILE_NAME
    path.write_text(make_broken(SHIPPED_FILE.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(DataFileError) as raised:
        load_keyword_library(path)
    message = str(raised.value)
    assert KEYWORD_FILE_NAME in message and str(tmp_path) in message
    assert key in message


def test_missing_library_file_names_the_file(tmp_path):
    path: Path = tmp_path / "nowhere" / KEYWORD_FILE_NAME
    with pytest.raises(DataFileError, match=re.escape(str(path))):
        load_keyword_library(path)


def test_the_length_limit_is_the_chosen_models_text_encoder(photo_path):
    """CLIP reads 77 tokens; CogVideoX's T5 226 and Wan's UMT5 512: a long prompt is only "too long" for CLIP."""
    from i2v.backends import spec_for
    from i2v.gpu.hardware import FixedGpuInfo
    from i2v.planning.plan import BasicPlanner
    from i2v.engine.request import GenerationRequest
    from i2v.engine.resolve import prepare

    prompt = ("a sailboat drifting slowly to the left across a calm bay at golden hour, small waves rippling "
              "against the hull, gulls circling above the mast, ") * 3
    assert 77 < estimate_clip_tokens(prompt) < 226
    for model, expected in (("tiny", True), ("tiny-cogvideox", False), ("tiny-wan", False)):
        job = prepare(GenerationRequest(image=photo_path, prompt=prompt, model=model, steps=2),
                      BasicPlanner(FixedGpuInfo.none()))
        too_long = [w for w in job.warnings if w.code == "prompt.too_long"]
        assert bool(too_long) is expected, model
        if expected:
            assert f"reads only {spec_for(model).max_prompt_tokens} " in too_long[0].message


def test_a_keyword_already_in_the_prompt_is_not_added_again():
    from i2v.guidance.keywords import add_keyword

    assert add_keyword("", "waves crashing") == "waves crashing"
    assert add_keyword("a boat, waves crashing", "waves crashing") == "a boat, waves crashing"
    assert add_keyword("Waves Crashing on rocks", "waves crashing") == "Waves Crashing on rocks"
    assert add_keyword("a city at night, time lapse", "time-lapse") == "a city at night, time lapse"
    assert add_keyword("a boat,", "waves crashing") == "a boat, waves crashing"
    # Whole words only: "zooming in" is not in "zooming inward".
    assert add_keyword("a face zooming inward", "zooming in") == "a face zooming inward, zooming in"
