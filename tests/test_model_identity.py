"""A model is known for certain or refused, never guessed: by its built-in name, a folder's model_index.json, the
Hugging Face cache's copy of it, an unmistakable name, or ``--family``; and ``plan`` says which family it planned
for and how it knew."""
from __future__ import annotations

import json

import pytest

from i2v.backends import FAMILIES, identify, spec_for
from i2v.cli import main
from i2v.errors import BadInputError


def cached_hub_model(hub_cache, repo_id: str, index: dict) -> None:
    """A hub snapshot in the layout huggingface_hub reads offline (refs/main → snapshots/<commit>)."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps(index))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.mark.parametrize("model", ["foo/bar", "someone/my-finetune", "THUDM/CogVideoX-5b", "someone/wan-i2v-merge"])
def test_an_id_that_nothing_identifies_is_refused_with_the_families(model, hub_cache):
    with pytest.raises(BadInputError) as refused:
        spec_for(model)
    message = str(refused.value)
    assert f"Cannot tell which model family '{model}'" in message
    assert all(family in message for family in FAMILIES)
    assert "--family" in message


@pytest.mark.parametrize(("model", "family"), [
    ("ali-vilab/i2vgen-xl", "i2vgen-xl"),
    ("THUDM/CogVideoX-5b-I2V", "cogvideox-i2v"),
    ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "wan2.1-i2v-480p"),
    ("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "wan2.1-i2v-720p"),
    ("someone/my-wan21-i2v-merge", "wan2.1-i2v-480p"),
    ("alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers", "easyanimate-v5.1"),
])
def test_names_that_cannot_be_mistaken_identify_their_family(model, family, hub_cache):
    identified = identify(model)
    assert (identified.family, identified.how) == (family, "its name")


def test_a_cached_hub_model_is_known_by_its_model_index_whatever_its_name(hub_cache):
    cached_hub_model(hub_cache, "someone/my-finetune", {"_class_name": "CogVideoXImageToVideoPipeline"})
    identified = identify("someone/my-finetune")
    assert identified.family == "cogvideox-i2v"
    assert identified.how == "model_index.json in the Hugging Face cache"


def test_the_cache_wins_over_a_misleading_name(hub_cache):
    cached_hub_model(hub_cache, "someone/i2vgen-xl-but-really-wan-i2v", {"_class_name": "WanImageToVideoPipeline"})
    assert identify("someone/i2vgen-xl-but-really-wan-i2v").family == "wan2.1-i2v-480p"


def test_family_names_a_fine_tune_and_is_refused_when_it_contradicts_the_cache(hub_cache):
    assert identify("someone/my-finetune", "easyanimate-v5.1").how == "--family"
    cached_hub_model(hub_cache, "someone/cached-tune", {"_class_name": "CogVideoXImageToVideoPipeline"})
    with pytest.raises(BadInputError, match="but --family says"):
        identify("someone/cached-tune", "wan2.1-i2v-480p")
    with pytest.raises(BadInputError, match="Unknown model family 'wan3'"):
        identify("someone/my-finetune", "wan3")


def test_a_built_in_model_takes_no_family():
    with pytest.raises(BadInputError, match="built-in model"):
        identify("tiny", "i2vgen-xl")


def test_plan_names_the_family_it_planned_for(capsys, hub_cache):
    assert main(["plan", "--model", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "--gpu-memory", "80", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["family"] == "wan2.1-i2v-720p"
    assert report["family_name"] == "Wan 2.1 I2V 720P"
    assert report["family_known_by"] == "its name"
    assert main(["plan", "--model", "someone/my-finetune", "--family", "cogvideox-i2v", "--gpu-memory", "80"]) == 0
    assert "CogVideoX-I2V (family cogvideox-i2v, known by --family)" in capsys.readouterr().out


def test_plan_refuses_an_unknown_id_instead_of_planning_another_model(capsys, hub_cache):
    assert main(["plan", "--model", "foo/bar", "--gpu-memory", "24"]) == 2
    err = capsys.readouterr().err
    assert "Cannot tell which model family 'foo/bar'" in err and "I2VGen-XL" not in err
