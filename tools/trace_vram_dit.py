"""Trace the activation memory of the diffusion-transformer models (CogVideoX-5b-I2V, Wan 2.1 I2V 14B, EasyAnimate
V5.1 7B, Wan 2.2 TI2V-5B and I2V-A14B) at full size on PyTorch's meta device: no GPU, no weights, a few minutes on a CPU.

Each stage is traced as our backend and the installed diffusers pipeline run it (the same tensor operations, in the
same dtypes: bf16 weights, Wan's VAE and the modules diffusers keeps in float32 in float32), counting every tensor
created until it is freed; the peak of live bytes is the stage's activation peak. Weights are not counted (they are
in the formula on their own). Attention is modelled as flash / memory-efficient SDPA (output only, no N² score
matrix), which is what PyTorch uses on a modern GPU.

Then fixed + per-unit constants are fitted to the traces (least squares on the relative error) and printed with each
trace's error; the constants in the backends' ``TransformerMemoryProfile`` come from this output (docs/VRAM.md).
Run: ``.venv/bin/python tools/trace_vram_dit.py [cogvideox] [wan] [easyanimate] [wan22-ti2v] [wan22-a14b]``.
"""
from __future__ import annotations

import copy
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from trace_vram import LiveBytes, flash_like_sdpa  # noqa: E402

GIB = 2**30
BF16 = torch.bfloat16
SDPA_CALLS = [0]


def counting_sdpa(*args, **kwargs):
    SDPA_CALLS[0] += 1
    return flash_like_sdpa(*args, **kwargs)


class Tracker(LiveBytes):
    """``LiveBytes`` that leaves out storage that existed before the trace (weights, buffers). Without this a view
    of a weight (the transpose inside ``F.linear``) counts the whole weight as a new allocation."""

    def __init__(self, *modules) -> None:
        super().__init__()
        for module in modules:
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                self.sizes[tensor.untyped_storage()._cdata] = 0


def traced_peak(modules, run) -> int:
    with torch.no_grad(), torch.device("meta"):
        tracker = Tracker(*modules)
        with tracker:
            run()
    return tracker.peak


def to_uint8(video):
    """``numerics.video_to_uint8`` without the copy to the CPU (the frames leave the GPU as uint8)."""
    frames = (video[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)
    return (frames * 255).round().to(torch.uint8)


def latent_shape(width, height, frames, spatial=8):
    return (frames - 1) // 4 + 1, height // spatial, width // spatial


# -- the models, as their pipelines run them ---------------------------------------------------------------------
class CogVideoX:
    name, cfg_batch = "cogvideox", 2
    denoise_shapes = [(720, 480, f) for f in (9, 17, 25, 33, 41, 49)]
    decode_shapes = [(720, 480, f) for f in (9, 17, 25, 33, 49)]
    encode_shapes = [(720, 480, 49)]  # the picture alone is encoded, whatever the frame count

    @staticmethod
    def encoded_frames(frames):
        return 1

    def __init__(self):
        from i2v.backends.cogvideox.backend import build_full_size_components

        self.parts = build_full_size_components()
        for part in self.parts.values():
            part.to(BF16).eval()

    def denoise(self, width, height, frames, guidance):
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import get_resize_crop_region_for_grid

        transformer = self.parts["transformer"]
        batch = 2 if guidance else 1  # cond and uncond concatenated
        lf, lh, lw = latent_shape(width, height, frames)
        grid = (lh // 2, lw // 2)
        crops = get_resize_crop_region_for_grid(grid, 90 // 2, 60 // 2)
        rotary = get_3d_rotary_pos_embed(embed_dim=64, crops_coords=crops, grid_size=grid, temporal_size=lf,
                                         device="meta")
        latents = torch.randn(1, lf, 16, lh, lw, dtype=BF16)
        image_latents = torch.randn(1, lf, 16, lh, lw, dtype=BF16)
        prompt_embeds = torch.randn(batch, 226, 4096, dtype=BF16)
        model_input = torch.cat([torch.cat([latents] * batch), torch.cat([image_latents] * batch)], dim=2)
        noise_pred = transformer(hidden_states=model_input, encoder_hidden_states=prompt_embeds,
                                 timestep=torch.tensor([500] * batch), image_rotary_emb=rotary, return_dict=False)[0]
        noise_pred = noise_pred.float()
        if batch == 2:
            uncond, text = noise_pred.chunk(2)
            noise_pred = uncond + 6.0 * (text - uncond)
        return noise_pred

    def decode(self, width, height, frames):
        vae = self.parts["vae"]
        lf, lh, lw = latent_shape(width, height, frames)
        latents = torch.randn(1, lf, 16, lh, lw, dtype=BF16).permute(0, 2, 1, 3, 4)  # pipeline.decode_latents
        return to_uint8(vae.decode(1 / vae.config.scaling_factor * latents).sample)

    def encode(self, width, height, frames):
        image = torch.randn(1, 3, height, width, dtype=BF16).unsqueeze(2)
        return self.parts["vae"].encode(image[0].unsqueeze(0)).latent_dist.sample()

    def text(self):
        return self.parts["text_encoder"](torch.zeros(1, 226, dtype=torch.long))[0]


class Wan:
    name, cfg_batch = "wan", 1  # the pipeline calls the transformer twice, batch 1 each (cond, then uncond)
    denoise_shapes = [(832, 480, f) for f in (5, 21, 41, 61, 81)] + [(1280, 720, 21), (1280, 720, 81),
                                                                     (480, 832, 81)]
    decode_shapes = [(832, 480, f) for f in (5, 41, 81)] + [(1280, 720, 21), (1280, 720, 81)]
    encode_shapes = decode_shapes

    @staticmethod
    def encoded_frames(frames):
        return frames

    def __init__(self):
        from i2v.backends.wan.backend import cast_as_loaded
        from i2v.backends.wan.config import build_full_size_components

        self.parts = build_full_size_components()
        for name, part in self.parts.items():
            part.eval()
            if name != "vae":  # the VAE stays in float32 (wan.VAE_DTYPE)
                cast_as_loaded(part, BF16)

    def denoise(self, width, height, frames, guidance):
        transformer = self.parts["transformer"]
        lf, lh, lw = latent_shape(width, height, frames)
        latents = torch.randn(1, 16, lf, lh, lw)  # float32, as prepare_latents makes them
        condition = torch.randn(1, 20, lf, lh, lw)
        prompt, negative = torch.randn(1, 512, 4096, dtype=BF16), torch.randn(1, 512, 4096, dtype=BF16)
        image_embeds = torch.randn(1, 257, 1280, dtype=BF16)
        model_input = torch.cat([latents, condition], dim=1).to(BF16)
        timestep = torch.tensor([500.0])
        noise_pred = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt,
                                 encoder_hidden_states_image=image_embeds, return_dict=False)[0]
        if guidance:  # a second call while the first prediction is held
            uncond = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=negative,
                                 encoder_hidden_states_image=image_embeds, return_dict=False)[0]
            noise_pred = uncond + 5.0 * (noise_pred - uncond)
        return noise_pred

    def decode(self, width, height, frames):
        vae = self.parts["vae"]
        lf, lh, lw = latent_shape(width, height, frames)
        latents = torch.randn(1, 16, lf, lh, lw)
        shape = (1, 16, 1, 1, 1)
        mean, inverse_std = torch.randn(shape), torch.randn(shape)
        return to_uint8(vae.decode(latents / inverse_std + mean, return_dict=False)[0])

    def encode(self, width, height, frames):
        image = torch.randn(1, 3, height, width).unsqueeze(2)  # float32, as the pipeline preprocesses it
        video = torch.cat([image, image.new_zeros(1, 3, frames - 1, height, width)], dim=2)
        return self.parts["vae"].encode(video).latent_dist.mode()

    def text(self):
        # The attention mask is left out: on the meta device transformers cannot test it; it adds 512 values.
        return self.parts["text_encoder"](torch.zeros(1, 512, dtype=torch.long), None).last_hidden_state


class EasyAnimate:
    name, cfg_batch = "easyanimate", 2
    denoise_shapes = [(672, 384, f) for f in (5, 25, 49)] + [(512, 512, 49), (1024, 1024, 25), (1024, 1024, 49),
                                                             (1344, 768, 49)]
    decode_shapes = [(672, 384, f) for f in (5, 25, 49)] + [(1024, 1024, 25), (1024, 1024, 49), (1344, 768, 49)]
    encode_shapes = decode_shapes

    @staticmethod
    def encoded_frames(frames):
        return frames

    def __init__(self):
        from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        from i2v.backends.easyanimate.backend import TEXT_ENCODER_CONFIG, TRANSFORMER_CONFIG, VAE_CONFIG

        config = copy.deepcopy(TEXT_ENCODER_CONFIG)
        # The published text_config's multimodal rotary split, which the forward needs (the count does not).
        config["text_config"]["rope_scaling"] = {"type": "mrope", "mrope_section": [16, 24, 24]}
        with torch.device("meta"):
            self.parts = {
                "transformer": EasyAnimateTransformer3DModel(**TRANSFORMER_CONFIG),
                "vae": AutoencoderKLMagvit(**VAE_CONFIG),
                "text_encoder": Qwen2VLForConditionalGeneration(Qwen2VLConfig(**config)),
            }
        for part in self.parts.values():
            part.to(BF16).eval()

    def denoise(self, width, height, frames, guidance):
        batch = 2 if guidance else 1  # cond and uncond concatenated
        lf, lh, lw = latent_shape(width, height, frames)
        latents = torch.randn(1, 16, lf, lh, lw, dtype=BF16)
        inpaint = torch.randn(batch, 17, lf, lh, lw, dtype=BF16)  # mask + masked-video latents, doubled for CFG
        prompt_embeds = torch.randn(batch, 256, 3584, dtype=BF16)
        model_input = torch.cat([latents] * batch)
        t_expand = torch.tensor([500.0] * batch).to(BF16)
        noise_pred = self.parts["transformer"](model_input, t_expand, encoder_hidden_states=prompt_embeds,
                                               inpaint_latents=inpaint, return_dict=False)[0]
        if batch == 2:
            uncond, text = noise_pred.chunk(2)
            noise_pred = uncond + 6.0 * (text - uncond)
        return noise_pred

    def decode(self, width, height, frames):
        vae = self.parts["vae"]
        lf, lh, lw = latent_shape(width, height, frames)
        latents = torch.randn(1, 16, lf, lh, lw, dtype=BF16)
        return to_uint8(vae.decode(latents / vae.config.scaling_factor).sample)

    def encode(self, width, height, frames):
        from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import add_noise_to_reference_video

        vae = self.parts["vae"]
        masked = torch.randn(1, 3, frames, height, width, dtype=BF16)  # moved to the GPU in the plan's dtype
        masked = add_noise_to_reference_video(masked, ratio=0.0563)
        return vae.encode(masked)[0].mode() * vae.config.scaling_factor

    def text(self):
        # Explicit position ids and no attention mask: on the meta device transformers cannot compute them.
        ids, positions = torch.zeros(1, 256, dtype=torch.long), torch.zeros(3, 1, 256, dtype=torch.long)
        return self.parts["text_encoder"](input_ids=ids, attention_mask=None, position_ids=positions,
                                          output_hidden_states=True).hidden_states[-2]


class Wan22TI2V:
    """Wan 2.2 TI2V-5B as ``WanImageToVideoPipeline(expand_timesteps=True)`` runs it: the picture's latents replace
    the first latent frame, the timestep is per token (0 on the first frame), no image encoder; the Wan 2.2 VAE
    (48 channels, 16× space) encodes the picture alone, in float32."""

    name, cfg_batch, spatial, kind = "wan22-ti2v", 1, 16, "ti2v-5b"
    denoise_shapes = [(1280, 704, f) for f in (5, 41, 81, 121)] + [(704, 1280, 121), (960, 544, 121)]
    decode_shapes = [(1280, 704, f) for f in (5, 41, 81, 121)] + [(960, 544, 121)]
    encode_shapes = [(1280, 704, 121), (960, 544, 121), (640, 352, 121)]

    @staticmethod
    def encoded_frames(frames):
        return 1

    def __init__(self):
        from i2v.backends.wan22.backend import cast_as_loaded
        from i2v.backends.wan22.config import build_full_size_components

        self.parts = build_full_size_components(self.kind)
        for name, part in self.parts.items():
            part.eval()
            if name != "vae":  # the VAE stays in float32 (wan22 VAE_DTYPE)
                cast_as_loaded(part, BF16)

    def denoise(self, width, height, frames, guidance):
        transformer = self.parts["transformer"]
        lf, lh, lw = latent_shape(width, height, frames, 16)
        latents, condition = torch.randn(1, 48, lf, lh, lw), torch.randn(1, 48, 1, lh, lw)  # float32
        mask = torch.ones(1, 1, lf, lh, lw)
        prompt, negative = torch.randn(1, 512, 4096, dtype=BF16), torch.randn(1, 512, 4096, dtype=BF16)
        model_input = ((1 - mask) * condition + mask * latents).to(BF16)
        timestep = (mask[0][0][:, ::2, ::2] * 500.0).flatten().unsqueeze(0)
        noise_pred = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt,
                                 return_dict=False)[0]
        if guidance:  # a second call while the first prediction is held
            uncond = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=negative,
                                 return_dict=False)[0]
            noise_pred = uncond + 5.0 * (noise_pred - uncond)
        return noise_pred

    def decode(self, width, height, frames):
        vae = self.parts["vae"]
        z = vae.config.z_dim
        lf, lh, lw = latent_shape(width, height, frames, self.spatial)
        latents = torch.randn(1, z, lf, lh, lw)
        mean, inverse_std = torch.randn(1, z, 1, 1, 1), torch.randn(1, z, 1, 1, 1)
        return to_uint8(vae.decode(latents / inverse_std + mean, return_dict=False)[0])

    def encode(self, width, height, frames):
        image = torch.randn(1, 3, height, width).unsqueeze(2)  # the picture alone (expand_timesteps)
        return self.parts["vae"].encode(image).latent_dist.mode()

    def text(self):
        return self.parts["text_encoder"](torch.zeros(1, 512, dtype=torch.long), None).last_hidden_state


class Wan22A14B(Wan22TI2V):
    """Wan 2.2 I2V-A14B: one expert at a time (both have this shape), Wan 2.1's VAE encoding the clip (picture,
    zeros, and the last frame when given: the same size), no image encoder."""

    name, cfg_batch, spatial, kind = "wan22-a14b", 1, 8, "a14b"
    denoise_shapes = Wan.denoise_shapes
    decode_shapes = Wan.decode_shapes
    encode_shapes = Wan.encode_shapes

    @staticmethod
    def encoded_frames(frames):
        return frames

    def denoise(self, width, height, frames, guidance):
        transformer = self.parts["transformer"]
        lf, lh, lw = latent_shape(width, height, frames)
        latents, condition = torch.randn(1, 16, lf, lh, lw), torch.randn(1, 20, lf, lh, lw)
        prompt, negative = torch.randn(1, 512, 4096, dtype=BF16), torch.randn(1, 512, 4096, dtype=BF16)
        model_input = torch.cat([latents, condition], dim=1).to(BF16)
        timestep = torch.tensor([500.0])
        noise_pred = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt,
                                 return_dict=False)[0]
        if guidance:
            uncond = transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=negative,
                                 return_dict=False)[0]
            noise_pred = uncond + 3.5 * (noise_pred - uncond)
        return noise_pred

    def encode(self, width, height, frames):
        image = torch.randn(1, 3, height, width).unsqueeze(2)
        video = torch.cat([image, image.new_zeros(1, 3, frames - 2, height, width), image], dim=2)
        return self.parts["vae"].encode(video).latent_dist.mode()


MODELS = {cls.name: cls for cls in (CogVideoX, Wan, EasyAnimate, Wan22TI2V, Wan22A14B)}


# -- fitting -----------------------------------------------------------------------------------------------------
def fit_upper(features: list[list[float]], traced: list[int]) -> tuple[int, int]:
    """The tightest two-coefficient formula ``features · c`` (c ≥ 0) that never predicts less than a trace: of the
    vertices of that feasible region (a line through two traces, or through one with the other coefficient zero),
    the one with the smallest mean relative over-prediction. Coefficients rounded up, so the bound holds."""
    a = np.array(features, dtype=float)
    y = np.array(traced, dtype=float)
    candidates = []
    for i in range(len(y)):
        for k in range(2):
            if a[i, k] > 0:
                c = np.zeros(2)
                c[k] = y[i] / a[i, k]
                candidates.append(c)
        for j in range(i + 1, len(y)):
            pair = a[[i, j]]
            if np.linalg.cond(pair) < 1e12:
                candidates.append(np.linalg.solve(pair, y[[i, j]]))
    candidates = [np.ceil(np.maximum(c, 0)) for c in candidates if (c >= -1e-9).all()]
    feasible = [c for c in candidates if (a @ c >= y).all()]
    best = min(feasible, key=lambda c: float(np.mean((a @ c - y) / y)))
    return int(best[0]), int(best[1])


def table(title: str, rows: list[tuple[str, int, float]]) -> float:
    print(f"| {title} | traced GiB | formula GiB | over |")
    print("|---|---|---|---|")
    worst = 0.0
    for label, traced, formula in rows:
        error = 100 * (formula - traced) / traced
        worst = max(worst, abs(error))
        print(f"| {label} | {traced / GIB:.3f} | {formula / GIB:.3f} | {error:+.1f} % |")
    print()
    return round(worst, 1)


def tokens(width, height, frames, spatial=8):
    lf, lh, lw = latent_shape(width, height, frames, spatial)
    return lf * (lh // 2) * (lw // 2)


def fitted_table(title, labels, features, traces, extra=()):
    first, second = fit_upper(features, traces)
    rows = [(label, traced, first * f[0] + second * f[1]) for label, traced, f in zip(labels, traces, features)]
    rows += [(label, traced, first * f[0] + second * f[1]) for label, traced, f in extra]
    return first, second, table(title, rows)


def trace_model(model) -> dict:
    parts = model.parts
    print(f"## {model.name}\n")
    constants = {}

    # Denoiser: FIXED + PER_TOKEN × batch × tokens, traced at the pipeline's CFG batch (and once without guidance,
    # as a check of the batch term).
    traces, features, labels = [], [], []
    for width, height, frames in model.denoise_shapes:
        units = model.cfg_batch * tokens(width, height, frames, getattr(model, "spatial", 8))
        traces.append(traced_peak([parts["transformer"]], lambda: model.denoise(width, height, frames, True)))
        features.append([1.0, units])
        labels.append(f"{width}×{height}×{frames} ({units} batch·tokens)")
    width, height, frames = model.denoise_shapes[-1]
    no_cfg = traced_peak([parts["transformer"]], lambda: model.denoise(width, height, frames, False))
    extra = [(f"{width}×{height}×{frames}, no guidance (batch 1)", no_cfg,
              [1.0, tokens(width, height, frames, getattr(model, "spatial", 8))])]
    fixed, per_token, worst = fitted_table("denoiser activations", labels, features, traces, extra)
    constants["denoise"] = dict(fixed=fixed, per_token=per_token, worst=worst)

    # VAE decode with the conversion to uint8: PER_CALL_PIXEL × pixels per call (the frame, or one tile) +
    # PER_FRAME_PIXEL × frames × frame pixels (the decoded clip, the tiles kept for blending, the conversion).
    vae = parts["vae"]
    tile_w, tile_h = vae.tile_sample_min_width, vae.tile_sample_min_height
    for tiled in (False, True):
        vae.enable_tiling() if tiled else vae.disable_tiling()
        traces, features, labels = [], [], []
        for width, height, frames in model.decode_shapes:
            traces.append(traced_peak([vae], lambda: model.decode(width, height, frames)))
            call = min(width, tile_w) * min(height, tile_h) if tiled else width * height
            features.append([call, frames * width * height])
            labels.append(f"{width}×{height}×{frames}")
        title = f"VAE decode, tiled ({tile_w}×{tile_h} tiles)" if tiled else "VAE decode"
        per_call, per_frame_pixel, worst = fitted_table(title, labels, features, traces)
        constants["decode_tiled" if tiled else "decode"] = dict(per_call_pixel=per_call,
                                                                per_frame_pixel=per_frame_pixel, worst=worst)
    vae.disable_tiling()

    # VAE encode of the conditioning: the picture alone (CogVideoX) or a clip of `frames` frames (Wan, EasyAnimate).
    traces, features, labels = [], [], []
    for width, height, frames in model.encode_shapes:
        traces.append(traced_peak([vae], lambda: model.encode(width, height, frames)))
        features.append([width * height, model.encoded_frames(frames) * width * height])
        labels.append(f"{width}×{height}×{frames}")
    per_pixel, per_frame_pixel, worst = fitted_table("VAE encode of the conditioning", labels, features, traces)
    constants["encode"] = dict(per_pixel=per_pixel, per_frame_pixel=per_frame_pixel, worst=worst)

    text = traced_peak([parts["text_encoder"]], model.text)
    print(f"Text encoder, one prompt: {text / GIB:.3f} GiB\n")
    constants["text"] = text
    return constants


def main(names: list[str]) -> None:
    F.scaled_dot_product_attention = counting_sdpa
    for name in names or list(MODELS):
        started = time.perf_counter()
        model = MODELS[name]()
        constants = trace_model(model)
        assert SDPA_CALLS[0] > 0, "attention never reached the flash-like SDPA: the trace would count N² scores"
        print(f"constants for {name}: {constants}  ({time.perf_counter() - started:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
