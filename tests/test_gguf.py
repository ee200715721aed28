"""Quantized transformers from GGUF files: the file replaces the folder's transformer weights (diffusers' GGUF
loader), is checked against the architecture before a weight is read, is counted by the planner at its size on disk,
and is named in the record. The GGUF files are built here from the tiny models, with the original checkpoint's key
names that diffusers' converter expects, quantized Q8_0 where a tensor's rows allow it."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import photo_like

from i2v.cli import main
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.engine.resolve import prepare
from i2v.errors import BadInputError, ModelLoadError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.memory.estimate import GIB
from i2v.planning.planner import MemoryPlanner

WAN = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
Q8_BLOCK = 32  # Q8_0 quantizes rows in blocks of 32 values

# diffusers name -> original Wan name, the inverse of convert_wan_transformer_to_diffusers (a test checks the round
# trip); the norm2/norm3 swap goes through a placeholder as diffusers' does.
_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."), (".norm_added_k.", ".norm_k_img."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    (".norm2.", ".norm__swap."), (".norm3.", ".norm2."), (".norm__swap.", ".norm3."),
    ("proj_out", "head.head"),
]


def original_wan_name(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    name = name.replace("scale_shift_table", "modulation")
    for diffusers_part, original_part in _TO_ORIGINAL:
        name = name.replace(diffusers_part, original_part)
    return name


def write_gguf(path, tensors: dict) -> None:
    """``tensors`` (name -> numpy float32) as a GGUF: Q8_0 for 2-D weights whose rows split into blocks of 32,
    F16 for other matrices, F32 for vectors and the 5-D patch embedding (as the community's files keep them)."""
    import gguf

    kinds = gguf.GGMLQuantizationType
    writer = gguf.GGUFWriter(str(path), arch="wan")
    for name, array in tensors.items():
        if array.ndim == 2 and array.shape[-1] % Q8_BLOCK == 0:
            packed = gguf.quants.quantize(array, kinds.Q8_0)
            writer.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=kinds.Q8_0)
        elif 2 <= array.ndim <= 3:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, array)
    finish(writer)


def finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def transformer_state(model: str) -> dict:
    """The built-in model's transformer weights as float32 numpy arrays, under diffusers' names."""
    import diffusers

    from i2v.backends import backend_for

    folder = backend_for(model).folder()
    cls = getattr(diffusers, json.loads((folder / "transformer" / "config.json").read_text())["_class_name"])
    transformer = cls.from_pretrained(folder / "transformer")
    return {name: tensor.float().numpy() for name, tensor in transformer.state_dict().items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    wan = transformer_state("tiny-wan")
    good = folder / "tiny-wan-Q8_0.gguf"
    write_gguf(good, {original_wan_name(name): array for name, array in wan.items()})
    broken = {original_wan_name(name): array for name, array in wan.items()
              if name != "blocks.0.attn1.to_q.weight"}  # dropped
    broken["head.head.weight"] = broken["head.head.weight"][:32]  # another shape
    broken["blocks.0.extra.weight"] = np.zeros((4, 4), np.float32)  # unexpected
    write_gguf(folder / "tiny-wan-broken.gguf", broken)
    write_gguf(folder / "tiny-cogvideox.gguf", transformer_state("tiny-cogvideox"))
    picture = folder / "picture.png"
    photo_like(96, 64).save(picture)
    return {"folder": folder, "good": good, "broken": folder / "tiny-wan-broken.gguf",
            "cogvideox": folder / "tiny-cogvideox.gguf", "picture": picture}


def request_for(files, transformer_file=None, model="tiny-wan") -> GenerationRequest:
    return GenerationRequest(image=files["picture"], prompt="waves crashing, camera panning left", model=model,
                             frames=5, steps=2, seeds=(3,), dtype="float32", device="cpu",
                             transformer_file=None if transformer_file is None else str(transformer_file))


def test_the_original_key_names_convert_back_to_the_architecture():
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    names = list(transformer_state("tiny-wan"))
    converted = convert_wan_transformer_to_diffusers({original_wan_name(name): name for name in names})
    assert sorted(converted) == sorted(names)
    assert all(converted[name] == name for name in names)


def test_a_q8_gguf_transformer_generates_a_close_video_and_the_record_names_the_file(files):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=files["folder"] / "out")
    base = engine.generate(request_for(files), keep_frames=True).videos[0]
    quantized = engine.generate(request_for(files, files["good"]), keep_frames=True).videos[0]
    assert engine.backend.transformer_file == str(files["good"])  # the resident model was reloaded for the file
    feed_forward = engine.backend.pipeline.transformer.blocks[0].ffn.net[2]
    assert type(feed_forward).__name__ == "GGUFLinear" and feed_forward.weight.quant_type.name == "Q8_0"
    difference = np.abs(quantized.frames.astype(int) - base.frames.astype(int))
    assert difference.any()  # the weights really were quantized
    assert difference.mean() < 0.5 and difference.max() <= 8, (difference.mean(), difference.max())
    record = quantized.record["model"]["transformer_file"]
    import hashlib

    assert record["name"] == files["good"].name
    assert record["sha256"] == hashlib.sha256(files["good"].read_bytes()).hexdigest()
    assert record["size"] == files["good"].stat().st_size
    assert record["quant_types"][:1] == ["F32"] and "Q8_0" in record["quant_types"]
    assert "transformer_file" not in base.record["model"]
    assert "--transformer-file" in quantized.record["reproduce"]
    assert any("transformer from" in n["message"] for n in quantized.record["notices"])


@pytest.mark.parametrize("which, fragments", [
    ("broken", ["53 tensors match", "1 missing: blocks.0.attn1.to_q.weight", "1 unexpected: blocks.0.extra.weight",
                "1 with another shape: proj_out.weight [32, 24] (expected [64, 24])"]),
    ("cogvideox", ["tensors match", "missing: ", "unexpected: "]),
])
def test_a_gguf_of_another_architecture_is_refused_before_the_run_and_writes_nothing(files, which, fragments):
    out = files["folder"] / f"refused-{which}"
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=out)
    with pytest.raises(ModelLoadError) as caught:
        engine.generate(request_for(files, files[which]))
    message = str(caught.value)
    assert all(fragment in message for fragment in fragments), message
    assert "\n" not in message
    assert not out.exists() or not any(out.rglob("*"))


def sparse_q4_file(path, size: int):
    """A GGUF the size of a Q4_K file for Wan 2.1 14B: a real header with one Q4_K tensor, then holes."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="wan")
    block_bytes = 144  # one Q4_K block: 256 values
    writer.add_tensor("blocks.0.ffn.0.weight", np.zeros((1, block_bytes), np.uint8), raw_shape=(1, block_bytes),
                      raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    finish(writer)
    with open(path, "r+b") as handle:
        handle.seek(size - 1)
        handle.write(b"\0")
    return path


def test_the_planner_counts_the_file_and_skips_fp8(files, tmp_path):
    """A Q4_K-sized file for Wan 2.1 14B on a 24 GiB card."""
    size = int(9.6 * GIB)
    hypothetical = sparse_q4_file(tmp_path / "wan2.1-i2v-14b-480p-Q4_K_M.gguf", size)
    planner = MemoryPlanner(FixedGpuInfo.single(total_gib=24, ram_gib=64))
    asked = dict(image=files["picture"], prompt="waves crashing", model=WAN, width=832, height=480, frames=81)
    plain = prepare(GenerationRequest(**asked), planner)
    quantized = prepare(GenerationRequest(**asked, transformer_file=str(hypothetical)), planner)
    notices = " ".join(n.message for n in quantized.notices)
    assert f"transformer from {hypothetical} (Q4_K, 9.6 GiB)" in notices
    assert quantized.spec.memory.weights("bfloat16")["transformer"] == size
    # Without the file only streaming the blocks fits; with it, keeping the active model on the GPU does.
    assert plain.plan.cpu_offload == "group" and quantized.plan.cpu_offload == "model"
    assert not quantized.plan.fp8_weights
    shape = dict(width=832, height=480, frames=81, dtype="bfloat16", vae_tiling=True, cpu_offload="model")
    assert (quantized.spec.memory.predict_peak(**shape).weights_denoise_bytes
            < plain.spec.memory.predict_peak(**shape).weights_denoise_bytes - 20 * GIB)
    ladder = planner.candidates(quantized.spec, 832, 480, 81, planner.gpu_info.devices()[0], "bfloat16")
    assert not any(candidate.plan.fp8_weights for candidate in ladder)


def test_plan_takes_the_file_too(tmp_path, capsys):
    hypothetical = sparse_q4_file(tmp_path / "wan-Q4_K.gguf", int(9.6 * GIB))
    args = ["plan", "--model", WAN, "--width", "832", "--height", "480", "--frames", "81", "--gpu-memory", "24",
            "--ram", "64", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--transformer-file", str(hypothetical)]) == 0
    quantized = json.loads(capsys.readouterr().out)
    assert (plain["plan"]["cpu_offload"], quantized["plan"]["cpu_offload"]) == ("group", "model")
    assert any("(Q4_K, 9.6 GiB)" in n["message"] for n in quantized["notices"])


def test_the_cli_flag_works_end_to_end(files, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    status = main(["generate", "--image", str(files["picture"]), "--prompt", "waves crashing", "--model", "tiny-wan",
                   "--frames", "5", "--steps", "2", "--seed", "1", "--device", "cpu",
                   "--transformer-file", str(files["good"]), "--output", str(out), "--json"])
    assert status == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["model"]["transformer_file"]["name"] == files["good"].name
    assert out.is_file()


def test_a_wrong_gguf_through_the_cli_is_one_line_and_no_file(files, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    status = main(["generate", "--image", str(files["picture"]), "--prompt", "waves crashing", "--model", "tiny-wan",
                   "--frames", "5", "--steps", "2", "--device", "cpu",
                   "--transformer-file", str(files["cogvideox"]), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and "does not match this model's transformer" in err
    assert not any(tmp_path.iterdir())


def test_not_a_gguf_is_refused_with_one_line(files, tmp_path, capsys):
    import pickle

    pickled = tmp_path / "transformer.gguf"
    pickled.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    safetensors = tmp_path / "transformer.safetensors"
    safetensors.write_bytes(b"{}")
    for value, fragment in ((safetensors, "must be a GGUF file (.gguf)"), (pickled, "is not a GGUF file"),
                            (tmp_path / "missing.gguf", "does not exist")):
        with pytest.raises(BadInputError, match=re.escape(fragment)):
            prepare(request_for(files, value), MemoryPlanner(FixedGpuInfo.none()))
        status = main(["generate", "--image", str(files["picture"]), "--prompt", "waves", "--model", "tiny-wan",
                       "--transformer-file", str(value), "--output", str(tmp_path / "x.mp4")])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and fragment in err
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("model", ["tiny", "i2vgen-xl-random", "tiny-cogvideox"])
def test_models_that_cannot_take_a_gguf_refuse_it_naming_those_that_can(files, model):
    with pytest.raises(BadInputError, match="Models that take one: wan2.1-i2v-480p, wan2.1-i2v-720p, tiny-wan"):
        prepare(request_for(files, files["good"], model=model), MemoryPlanner(FixedGpuInfo.none()))


def test_a_hub_file_name_is_accepted_in_form_and_other_text_is_not():
    from i2v.backends.gguf_file import check_transformer_file, hub_file

    assert hub_file("city96/Wan2.1-I2V-14B-480P-gguf/wan2.1-i2v-14b-480p-Q4_K_M.gguf").repo_id == \
        "city96/Wan2.1-I2V-14B-480P-gguf"
    check_transformer_file("city96/Wan2.1-I2V-14B-480P-gguf/sub/dir/file-Q8_0.gguf")
    for bad in ("city96/file.gguf", "not a file", "https://example.com/x.gguf", ""):
        with pytest.raises(BadInputError):
            check_transformer_file(bad)


def test_a_safer_dtype_reloads_the_gguf_transformer_computing_in_it(files):
    """GGUF layers dequantize to the dtype they were loaded with: a NaN retry's dtype change must load again."""
    import torch

    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=files["folder"] / "dtype")
    engine.load(request_for(files, files["good"]).with_changes(dtype="bfloat16"))
    engine.backend.set_dtype("float32")
    feed_forward = engine.backend.pipeline.transformer.blocks[0].ffn.net[2]
    assert type(feed_forward).__name__ == "GGUFLinear" and feed_forward.compute_dtype == torch.float32


def test_streaming_the_blocks_runs_a_gguf_transformer(files):
    from dataclasses import replace

    from i2v.planning.plan import BasicPlanner

    class Streaming(BasicPlanner):
        def plan(self, *args, **kwargs):
            decision = super().plan(*args, **kwargs)
            return replace(decision, plan=replace(decision.plan, cpu_offload="group"))

    engine = Engine(gpu_info=FixedGpuInfo.none(), planner=Streaming(FixedGpuInfo.none()),
                    output_dir=files["folder"] / "group")
    streamed = engine.generate(request_for(files, files["good"]), keep_frames=True).videos[0]
    plain = Engine(gpu_info=FixedGpuInfo.none(), output_dir=files["folder"] / "plain").generate(
        request_for(files, files["good"]), keep_frames=True).videos[0]
    assert streamed.record["plan"]["cpu_offload"] == "group"
    assert (streamed.frames == plain.frames).all()


def test_a_comfyui_reshaped_tensor_is_named_as_such(files, tmp_path):
    """ComfyUI-GGUF stores some tensors reshaped with their true shape in metadata; diffusers reads no such
    metadata, so the file is refused, saying why."""
    import gguf

    from i2v.backends.gguf_file import check_fits, read_tensors
    from i2v.backends.wan.tiny import tiny_wan_folder
    from diffusers import WanTransformer3DModel

    wan = {original_wan_name(name): array for name, array in transformer_state("tiny-wan").items()}
    patch = wan["patch_embedding.weight"]
    wan["patch_embedding.weight"] = patch.reshape(patch.shape[0], patch.shape[1], 2, 2)  # 5-D → 4-D
    path = tmp_path / "comfy.gguf"
    writer = gguf.GGUFWriter(str(path), arch="wan")
    writer.add_array("comfy.gguf.orig_shape.patch_embedding.weight", list(patch.shape))
    for name, array in wan.items():
        writer.add_tensor(name, array)
    finish(writer)
    tensors = read_tensors(path)
    assert tensors.reshaped == {"patch_embedding.weight"}
    with pytest.raises(ModelLoadError, match=r"1 with another shape: patch_embedding.weight .*stored reshaped for "
                                             r"ComfyUI"):
        check_fits(WanTransformer3DModel, path, tiny_wan_folder() / "transformer", tensors)
