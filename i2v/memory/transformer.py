"""Peak VRAM prediction for the diffusion-transformer models (CogVideoX-I2V, Wan 2.1 I2V, EasyAnimate V5.1).

Their pipelines run four stages, each with its own weights on the GPU, and the peak is the largest:

    text     the text encoder reads the prompt, then the negative prompt (one at a time)
    encode   the VAE encodes the conditioning: the picture alone (CogVideoX), or a clip of ``frames`` frames, the
             picture then zeros (Wan) or black frames (EasyAnimate)
    denoise  the transformer: FIXED + PER_TOKEN × batch × tokens, tokens = latent frames × (h/8/2) × (w/8/2),
             latent frames = (frames − 1)/4 + 1; batch 2 with guidance where the pipeline concatenates the
             conditional and unconditional inputs (CogVideoX, EasyAnimate), 1 for Wan (two calls of batch 1)
    decode   the causal 3-D VAE decodes one or two latent frames per call with a temporal cache (so the plan's
             frame chunks do not apply; tiling does), then the frames become uint8:
             PER_CALL_PIXEL × pixels per call (the frame, or one tile) + PER_FRAME_PIXEL × frames × frame pixels

    peak = max(stages) × (1 + allocator slack) + CUDA context          (slack and context: estimate.py)

Weights on the GPU per stage: all of them without offload (every expert of a model with several, Wan 2.2 A14B).
With model offload (diffusers' enable_model_cpu_offload:
a chain in which a model leaves the GPU only when the next model of the chain starts) the pipelines encode the
conditioning before the transformer's first call, so the model before the VAE is still there (the text encoder; for
Wan the image encoder), and the VAE stays through the denoising; the pipeline offloads everything when it returns,
so our decode has the VAE alone. The chain holds each expert in turn (``transformer->transformer_2``): the first
call of the second expert offloads the first, so the denoising has one expert and the VAE. With group offload (diffusers' block-level ``enable_group_offload`` on every
component, CUDA streams) each model is on the GPU only while it runs, and the transformer only in part: what lies
outside its repeated blocks, the block running and the next one (prefetched). Every weight then waits in pinned CPU
RAM (``host_bytes``). With fp8 weights (``enable_layerwise_casting``) the blocks' weights are stored in one byte each
and upcast one layer at a time.

Activation figures are for 2-byte values (float32 doubles them); the VAE figures are for the VAE's own dtype in a
bfloat16 plan (Wan's VAE always runs in float32). They come from tracing the full-size models on PyTorch's meta
device (``tools/trace_vram_dit.py``, docs/VRAM.md) and are fitted as upper bounds of the traces; none is measured on a
GPU yet.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from i2v.memory.estimate import ALLOCATOR_SLACK, BYTES_PER_VALUE, CUDA_CONTEXT, VramEstimate

STAGES = ("text", "encode", "denoise", "decode")


@dataclass(frozen=True)
class TransformerMemoryProfile:
    """What the prediction needs to know about a diffusion-transformer model (bytes, see the module docstring)."""

    transformer_params: int
    text_encoder_params: int
    vae_params: int
    image_encoder_params: int = 0
    audio_params: int = 0  # a sound track's decoders (LTX-2: audio VAE + vocoder), on the GPU with the video VAE
    connector_params: int = 0  # a model between text encoder and transformer (LTX-2's text connectors)
    transformer_fp32_params: int = 0  # modules diffusers keeps in float32 (``_keep_in_fp32_modules``)
    vae_dtype: str | None = None  # None: the plan's dtype
    cfg_batch: int = 2  # transformer batch with guidance
    patch_size: int = 2
    vae_scale_factor: int = 8
    temporal_compression: int = 4
    denoise_fixed: int = 0
    denoise_per_token: int = 0  # per token and batch element
    text_activation: int = 0  # one prompt through the text encoder
    encodes_clip: bool = True  # the VAE encodes ``frames`` frames of conditioning (False: the picture alone)
    encode_resident: tuple[str, ...] = ("text_encoder", "vae")  # on the GPU during that encode with model offload
    encode_per_pixel: int = 0
    encode_per_frame_pixel: int = 0
    decode_per_call_pixel: int = 0
    decode_per_frame_pixel: int = 0
    vae_tile: tuple[int, int] = (512, 512)  # width × height of the VAE's decode tiles
    decode_tiled_per_call_pixel: int = 0
    decode_tiled_per_frame_pixel: int = 0
    transformer_blocks: int = 0  # the repeated blocks group offload streams (0: the rung is not offered)
    # The text encoder's largest layer (its embedding table): group offload streams the text encoder layer by layer
    # (leaf level), so while it reads a prompt it holds about two of its largest layers. 0: counted whole.
    text_encoder_largest_layer_params: int = 0
    transformer_block_params: int = 0  # the parameters inside those blocks, all together
    # Transformers of ``transformer_params`` each that take turns over the steps (Wan 2.2 A14B: a high-noise and a
    # low-noise expert, switched at a boundary timestep); one computes at a time, so activations are one's. Without
    # offload every expert's weights stay on the GPU; with model offload the idle one waits on the CPU.
    experts: int = 1
    # The transformer's weights from a quantized file (GGUF) instead of its parameters × the dtype's bytes: the
    # file's size, whatever the plan's dtype (diffusers keeps them quantized and dequantizes a layer as it runs).
    transformer_file_bytes: int | None = None
    # LoRA weights attached to the transformer's layers (PEFT adapters, kept beside the base weights, in its dtype).
    lora_params: int = 0
    # A latent upsampler (LTX-2's ×2 spatial one) the family can run between two denoising stages (0: it has none).
    upsampler_params: int = 0
    # This run has two stages (``two_staged``): the first denoises at half size with guidance, the upsampler doubles
    # the latents' sides, the second refines at full size without guidance (batch 1).
    two_stage: bool = False

    # A causal 3-D VAE decodes the whole clip with a temporal cache: frame chunks change nothing, tiling does.
    decodes_in_frame_chunks = False

    def frame_rungs(self, frames: int) -> tuple[int, ...]:
        """Every count below the request: memory grows with frames in the denoising stage only, a little per frame,
        so the plan keeps as many frames as fit."""
        return tuple(range(frames - 1, 0, -1))

    @property
    def streams_blocks(self) -> bool:
        return self.transformer_blocks > 0

    @property
    def fp8_weights_possible(self) -> bool:
        """fp8 storage casts float weights; quantized GGUF weights are not float weights."""
        return self.transformer_file_bytes is None

    def with_lora_params(self, count: int) -> "TransformerMemoryProfile":
        """The same model with ``count`` LoRA parameters loaded into its transformer."""
        return dataclasses.replace(self, lora_params=count)

    def two_staged(self) -> "TransformerMemoryProfile":
        """The same model run in two stages (see ``two_stage``; docs/VRAM.md, "Two stages")."""
        if not self.upsampler_params:
            raise ValueError("this model has no latent upsampler to run in two stages")
        return dataclasses.replace(self, two_stage=True)

    def with_transformer_bytes(self, size: int) -> "TransformerMemoryProfile":
        """The same model with its transformer's weights read from a quantized file of ``size`` bytes; the blocks keep
        their share of the weights, for group offload."""
        return dataclasses.replace(self, transformer_file_bytes=size)

    def predict_peak(self, *, width: int, height: int, frames: int, dtype: str, decode_chunk_size: int = 1,
                     vae_tiling: bool = False, cpu_offload: str = "none", fp8_weights: bool = False,
                     guidance: bool = True) -> "TransformerVramEstimate":
        """``decode_chunk_size`` is accepted for the common interface and ignored (see ``decodes_in_frame_chunks``)."""
        scale = BYTES_PER_VALUE[dtype] / 2  # the activation constants are for 2-byte values
        vae_dtype = self.vae_dtype or dtype
        vae_scale = BYTES_PER_VALUE[vae_dtype] / BYTES_PER_VALUE[self.vae_dtype or "bfloat16"]
        on_gpu = self._weights_on_gpu(dtype, cpu_offload, fp8_weights)

        batch = self.cfg_batch if guidance else 1
        tokens = self.tokens(width, height, frames)
        pixels = width * height
        encoded = frames if self.encodes_clip else 1
        if vae_tiling:
            tile_w, tile_h = self.vae_tile
            per_call = min(width, tile_w) * min(height, tile_h)
            decode = self.decode_tiled_per_call_pixel * per_call + self.decode_tiled_per_frame_pixel * frames * pixels
        else:
            decode = self.decode_per_call_pixel * pixels + self.decode_per_frame_pixel * frames * pixels
        activations = {
            "text": int(scale * self.text_activation),
            "encode": int(vae_scale * (self.encode_per_pixel * pixels
                                       + self.encode_per_frame_pixel * encoded * pixels)),
            "denoise": int(scale * self._denoise_activation(width, height, frames, batch)),
            "decode": int(vae_scale * decode),
        }
        totals = {stage: on_gpu[stage] + activations[stage] for stage in STAGES}
        stage = max(STAGES, key=lambda name: totals[name])  # ties: the earliest
        slack = int(ALLOCATOR_SLACK * totals[stage])
        return TransformerVramEstimate(
            peak_bytes=totals[stage] + slack + CUDA_CONTEXT,
            stage=stage,
            weights_denoise_bytes=on_gpu["denoise"],
            unet_activation_bytes=activations["denoise"],
            weights_decode_bytes=on_gpu["decode"],
            decode_activation_bytes=activations["decode"],
            slack_bytes=slack,
            context_bytes=CUDA_CONTEXT,
            weights_text_bytes=on_gpu["text"],
            text_activation_bytes=activations["text"],
            weights_encode_bytes=on_gpu["encode"],
            encode_activation_bytes=activations["encode"],
            tokens=tokens,
            batch=batch,
        )

    def _denoise_activation(self, width: int, height: int, frames: int, batch: int) -> int:
        """One transformer call's activations, for 2-byte values. Two stages: the larger of the first stage (half the
        sides, ``batch``) and the refinement (full size, batch 1: it runs without guidance)."""
        if not self.two_stage:
            return self.denoise_fixed + self.denoise_per_token * batch * self.tokens(width, height, frames)
        first = self.denoise_per_token * batch * self.tokens(width // 2, height // 2, frames)
        refine = self.denoise_per_token * self.tokens(width, height, frames)
        return self.denoise_fixed + max(first, refine)

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_compression + 1

    def tokens(self, width: int, height: int, frames: int) -> int:
        side = self.vae_scale_factor * self.patch_size
        return self.latent_frames(frames) * (height // side) * (width // side)

    def _weights_on_gpu(self, dtype: str, cpu_offload: str, fp8_weights: bool) -> dict[str, int]:
        """Bytes of weights on the GPU in each stage (module docstring)."""
        weights = self.weights(dtype, fp8_weights=fp8_weights)
        if cpu_offload == "model":
            resident = {"text": ("text_encoder",), "encode": self.encode_resident, "denoise": ("transformer", "vae"),
                        "decode": ("vae", "audio")}
        elif cpu_offload == "group":
            resident = {"text": ("text_encoder",), "encode": ("image_encoder", "vae", "connectors"), "denoise": (),
                        "decode": ("vae", "audio")}
        else:
            resident = {stage: tuple(weights) for stage in STAGES}
        on_gpu = {stage: sum(weights[name] for name in names) for stage, names in resident.items()}
        if cpu_offload != "none":
            # The upsampler comes to the GPU for its one call between the stages: counted with the denoising's
            # weights (an upper bound: the pipeline has offloaded the transformer by then).
            on_gpu["denoise"] += weights["upsampler"]
        if cpu_offload == "group":
            on_gpu["denoise"] = self.streamed_transformer_bytes(dtype, fp8_weights) + weights["upsampler"]
            if self.text_encoder_largest_layer_params:  # streamed layer by layer: the running one and the next
                on_gpu["text"] = 2 * self.text_encoder_largest_layer_params * BYTES_PER_VALUE[dtype]
        return on_gpu

    def streamed_transformer_bytes(self, dtype: str, fp8_weights: bool = False) -> int:
        """The transformer's weights on the GPU while group offload streams it: what lies outside its blocks, the
        block running and the next one (prefetched on a CUDA stream); with fp8 storage also one block's weights
        upcast to the compute dtype (an upper bound: diffusers upcasts a layer at a time)."""
        value = BYTES_PER_VALUE[dtype]
        if self.transformer_file_bytes is not None:  # quantized: every weight shrinks in the file's proportion
            share = self.transformer_block_params / self.transformer_params
            block = int(self.transformer_file_bytes * share) // max(self.transformer_blocks, 1)
            lora_block = self.lora_params * value // max(self.transformer_blocks, 1)  # LoRAs sit in the blocks
            return self.transformer_file_bytes - block * self.transformer_blocks + 2 * (block + lora_block)
        block = (self.transformer_block_params + self.lora_params) // max(self.transformer_blocks, 1)
        outside = self.weights(dtype)["transformer"] - (self.transformer_block_params + self.lora_params) * value
        return outside + 2 * block * (1 if fp8_weights else value) + (block * value if fp8_weights else 0)

    def host_bytes(self, dtype: str, fp8_weights: bool = False) -> int:
        """CPU RAM that group offload pins for the weights while they wait."""
        return sum(self.weights(dtype, fp8_weights=fp8_weights).values())

    def weights(self, dtype: str, *, fp8_weights: bool = False) -> dict[str, int]:
        value = BYTES_PER_VALUE[dtype]
        fp32 = self.transformer_fp32_params
        # fp8 storage (layerwise casting) keeps one byte per weight inside the blocks; the rest keeps its dtype.
        fp8_saving = self.transformer_block_params * (value - 1) if fp8_weights else 0
        transformer = (self.transformer_params - fp32) * value + fp32 * BYTES_PER_VALUE["float32"] - fp8_saving
        if self.transformer_file_bytes is not None:
            transformer = self.transformer_file_bytes
        transformer += self.lora_params * value
        return {
            "transformer": transformer,
            "text_encoder": self.text_encoder_params * value,
            "image_encoder": self.image_encoder_params * value,
            "vae": self.vae_params * BYTES_PER_VALUE[self.vae_dtype or dtype],
            # Resident only where everything is (no offload): the offload modes name the stages' models one by one.
            "idle_experts": (self.experts - 1) * transformer,
            "audio": self.audio_params * value,
            "connectors": self.connector_params * value,
            "upsampler": self.upsampler_params * value if self.two_stage else 0,
        }

    def scaled(self, *, transformer_width: float, vae_width: float, text_width: float, **params: int
               ) -> "TransformerMemoryProfile":
        """The same model at other widths (the test models): activations scale with the width, parameters are
        given."""
        def times(value: int, ratio: float) -> int:
            return int(value * ratio)

        if "transformer_params" in params and "transformer_block_params" not in params:  # the same share in blocks
            params["transformer_block_params"] = times(self.transformer_block_params,
                                                       params["transformer_params"] / self.transformer_params)
        if "text_encoder_params" in params and "text_encoder_largest_layer_params" not in params:
            params["text_encoder_largest_layer_params"] = times(
                self.text_encoder_largest_layer_params, params["text_encoder_params"] / self.text_encoder_params)
        return dataclasses.replace(
            self, **params,
            denoise_fixed=times(self.denoise_fixed, transformer_width),
            denoise_per_token=times(self.denoise_per_token, transformer_width),
            text_activation=times(self.text_activation, text_width),
            **{name: times(getattr(self, name), vae_width) for name in (
                "encode_per_pixel", "encode_per_frame_pixel", "decode_per_call_pixel", "decode_per_frame_pixel",
                "decode_tiled_per_call_pixel", "decode_tiled_per_frame_pixel")},
        )


@dataclass(frozen=True)
class TransformerVramEstimate(VramEstimate):
    """``VramEstimate`` with the two stages before denoising. ``unet_activation_bytes`` holds the transformer's."""

    weights_text_bytes: int = 0
    text_activation_bytes: int = 0
    weights_encode_bytes: int = 0
    encode_activation_bytes: int = 0
    tokens: int = 0
    batch: int = 1

    def weights_by_stage(self) -> dict[str, int]:
        return {"text": self.weights_text_bytes, "encode": self.weights_encode_bytes,
                "denoise": self.weights_denoise_bytes, "decode": self.weights_decode_bytes}

    def activations_by_stage(self) -> dict[str, int]:
        return {"text": self.text_activation_bytes, "encode": self.encode_activation_bytes,
                "denoise": self.unet_activation_bytes, "decode": self.decode_activation_bytes}
