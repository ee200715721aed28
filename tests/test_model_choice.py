"""The model as a choice: which models are offered (configured, listed, in the Hugging Face cache, test models),
the API's ``model`` input, and switching models in the running app (one resident at a time, the old one freed)."""
from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import pytest
from gradio_client import handle_file

from i2v.backends import BUILT_IN_MODELS, TEST_MODELS
from i2v.errors import BadInputError
from i2v.backends.catalog import KNOWN_HUB_MODELS, in_hub_cache, offered_models
from i2v.engine.video import probe_mp4

from conftest import photo_like
from web_support import running_app

PROMPT = "waves crashing on the rocks, camera panning left"


def fake_hub_cache(root: Path, repo_id: str, *, complete: bool = True) -> None:
    """The layout huggingface_hub writes: refs/main names the commit, snapshots/<commit>/ holds the files."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    if complete:
        (snapshot / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXImageToVideoPipeline"}))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


# -- what is offered ---------------------------------------------------------------------------------------
def test_a_real_model_offers_itself_and_the_known_models_already_downloaded(hub_cache):
    fake_hub_cache(hub_cache, "THUDM/CogVideoX-5b-I2V")
    fake_hub_cache(hub_cache, "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", complete=False)  # download never finished
    assert in_hub_cache("THUDM/CogVideoX-5b-I2V") and not in_hub_cache("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    offered = offered_models("ali-vilab/i2vgen-xl")
    assert list(offered) == ["ali-vilab/i2vgen-xl", "THUDM/CogVideoX-5b-I2V"]
    assert offered["THUDM/CogVideoX-5b-I2V"].spec.family == "CogVideoX-I2V"
    assert offered["THUDM/CogVideoX-5b-I2V"].source == "cached"
    # No test model next to a real one: they only make videos of noise.
    assert not set(offered) & set(BUILT_IN_MODELS)


def test_a_test_model_offers_the_other_test_models_and_listed_models_come_after_the_configured(hub_cache):
    offered = offered_models("tiny", ["THUDM/CogVideoX-5b-I2V"])
    assert list(offered)[:2] == ["tiny", "THUDM/CogVideoX-5b-I2V"]
    assert set(TEST_MODELS) <= set(offered)
    # The full-size random model needs ~10 GB to build: a bench and GPU-test model, never a menu entry.
    assert "i2vgen-xl-random" not in offered
    assert offered["tiny-cogvideox"].spec.random_weights
    assert "tiny-cogvideox — CogVideoX-I2V (tiny, random weights)" == offered["tiny-cogvideox"].label


def test_a_listed_model_no_backend_can_load_fails_the_start_with_the_setting_named(hub_cache):
    with pytest.raises(BadInputError, match="I2V_MODELS: Model 'not a model' is neither"):
        offered_models("tiny", ["not a model"])


def test_every_known_hub_model_has_a_backend():
    from i2v.backends import spec_for

    assert KNOWN_HUB_MODELS[0] == "ali-vilab/i2vgen-xl"
    assert {spec_for(name).family for name in KNOWN_HUB_MODELS} >= {"I2VGen-XL", "CogVideoX-I2V"}


# -- the running app ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("model-choice-outputs")) as running:
        yield running


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model-choice-input") / "input.png"
    photo_like(480, 320).save(path)
    return path


def test_api_generates_on_another_offered_model_and_the_old_one_is_freed(server, client, image):
    engine = server.app.jobs.engine
    client.predict(handle_file(str(image)), PROMPT, resolution=128, frames=4, steps=2, api_name="/generate")
    first = engine.backend
    assert first.model_id == "tiny"
    old_pipeline = weakref.ref(first.pipeline)

    video, files, result = client.predict(handle_file(str(image)), PROMPT, frames=16, steps=2,
                                          model="tiny-cogvideox", api_name="/generate")
    assert probe_mp4(Path(video))["frames"] == 17  # CogVideoX's 8N+1 rule, not the 16 asked for
    assert "frames.snapped" in [n["code"] for n in result["notices"]]
    record = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert record["model"]["model_id"] == "tiny-cogvideox" and record["model"]["random_weights"]
    assert record["params"]["model"] == "tiny-cogvideox" and (record["params"]["width"],
                                                              record["params"]["height"]) == (96, 64)
    # One model resident: the I2VGen-XL pipeline is gone, not merely replaced.
    assert engine.backend.model_id == "tiny-cogvideox"
    gc.collect()
    assert old_pipeline() is None


def test_api_refuses_a_model_the_app_does_not_offer(client, image):
    from gradio_client.exceptions import AppError

    for model in ("ali-vilab/i2vgen-xl", "/etc"):
        with pytest.raises(AppError, match="is not offered by this app; choose one of: tiny"):
            client.predict(handle_file(str(image)), PROMPT, steps=2, model=model, api_name="/generate")
