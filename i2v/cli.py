"""Command line: ``python -m i2v generate …`` (batch over prompts and seeds), ``plan``, ``gpu-status``, ``info``,
``presets``, ``lint``, ``download``, ``bench``, ``jobs``, ``requeue``.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback), 1 failure, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from i2v.backends import FAMILIES
from i2v.bench.command import add_bench_parser, run_bench_command
from i2v.service import jobs_cli
from i2v.errors import BadInputError, I2VError, JobCancelled
from i2v.logs import configure_logging
from i2v.loras.choice import parse_lora
from i2v.engine.request import DTYPE_CHOICES, GenerationRequest, default_model
from i2v.guidance.framing import FRAMINGS

log = logging.getLogger("i2v.cli")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we promise one clear line
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


OFFLOAD_WORDS = {"none": "", "model": ", model offload", "group": ", blocks streamed from CPU RAM (group offload)"}
FAMILY_HELP = ("the model family, for a hub id whose name and Hugging Face cache do not tell (a fine-tune): one of "
               + ", ".join(FAMILIES))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m i2v", description="I2V Studio: image + prompt → video (I2VGen-XL).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser("generate", help="make videos from an image and one or more prompts")
    gen.add_argument("--image", required=True, help="input image (PNG, JPEG, WEBP, GIF, BMP, TIFF)")
    gen.add_argument("--last-image", help="the video's last frame, for models that take one (Wan 2.2 I2V-A14B)")
    gen.add_argument("--prompt", action="append", required=True,
                     help="what moves and how; repeat for a batch over prompts")
    gen.add_argument("--negative-prompt", default="", help="what to avoid (e.g. 'blurry, distorted')")
    gen.add_argument("--preset", help="fast-check | balanced | high-quality (default: balanced)")
    gen.add_argument("--resolution", type=int, help="tier: about N² pixels at the image's aspect (512, 768, 1024)")
    gen.add_argument("--width", type=int, help="explicit width (with --height, instead of --resolution)")
    gen.add_argument("--height", type=int, help="explicit height")
    gen.add_argument("--frames", type=int)
    gen.add_argument("--steps", type=int)
    gen.add_argument("--cfg", "--guidance", dest="guidance", type=float, help="guidance scale (default 9.0)")
    gen.add_argument("--fps", type=int)
    gen.add_argument("--seed", type=int, action="append", default=[],
                     help="seed; repeat for several candidates with these seeds")
    gen.add_argument("--candidates", type=int, default=1, help="videos per prompt, seeds counting up")
    gen.add_argument("--auto-enhance", action="store_true", help="contrast ×1.2, sharpness ×1.1 before the run")
    gen.add_argument("--framing", choices=FRAMINGS, default="crop",
                     help="when the picture's aspect is not the video's: crop (fill the frame; default) or pad (the "
                          "whole picture on black bars)")
    gen.add_argument("--crop-focus", type=_crop_focus, default=(0.5, 0.5), metavar="X,Y",
                     help="the part a crop keeps: X from 0 (left) to 1 (right), Y from 0 (top) to 1 (bottom); "
                          "default 0.5,0.5 (the centre)")
    gen.add_argument("--no-audio", dest="audio", action="store_false",
                     help="leave the sound track out (models with sound, e.g. LTX-2; others have none anyway)")
    gen.add_argument("--model", default=None, help=f"hub id, local folder or 'tiny' (default: {default_model()})")
    gen.add_argument("--family", help=FAMILY_HELP)
    gen.add_argument("--transformer-file", metavar="PATH",
                     help="a quantized transformer (GGUF: .gguf path or hub owner/repo/file.gguf) instead of the "
                          "model's own; Wan 2.1 only")
    gen.add_argument("--lora", action="append", default=[], metavar="PATH[:STRENGTH]",
                     help="a LoRA (.safetensors path, a file in the LoRA folder I2V_LORA_DIR, or hub "
                          "owner/repo/file.safetensors) at a strength (default 1); repeat for several")
    gen.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto")
    gen.add_argument("--device", help="cpu or cuda[:N] (default: the first GPU, else CPU)")
    gen.add_argument("--output", type=Path, help="output .mp4 (default: outputs/DATE/…)")
    gen.add_argument("--output-dir", type=Path, help="folder for outputs when --output is not given")
    gen.add_argument("--json", action="store_true", help="print one JSON record per video on stdout")

    plan = sub.add_parser("plan", help="predict peak VRAM and show the plan for settings, before renting a GPU")
    plan.add_argument("--preset", help="fast-check | balanced | high-quality (default: balanced)")
    plan.add_argument("--resolution", type=int)
    plan.add_argument("--width", type=int)
    plan.add_argument("--height", type=int)
    plan.add_argument("--aspect", type=_aspect, default=1.0,
                      help="image width/height when using --resolution or --preset: 1.5, or 16/9")
    plan.add_argument("--frames", type=int)
    plan.add_argument("--steps", type=int)
    plan.add_argument("--model", default=None)
    plan.add_argument("--family", help=FAMILY_HELP)
    plan.add_argument("--transformer-file", metavar="PATH",
                      help="plan with a quantized transformer (GGUF) of this file's size (Wan 2.1 only)")
    plan.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto")
    plan.add_argument("--gpu-memory", type=float, metavar="GB",
                      help="plan for a hypothetical GPU with this much free memory (GiB) instead of the local one")
    plan.add_argument("--no-bf16", action="store_true", help="with --gpu-memory: the card has no bfloat16")
    plan.add_argument("--ram", type=float, metavar="GB",
                      help="with --gpu-memory: the system RAM (GiB) for weights streamed from the CPU (default: not checked)")
    plan.add_argument("--json", action="store_true")

    sub.add_parser("gpu-status", help="print the GPU monitor's snapshot (the /gpu_status payload) as JSON")

    add_bench_parser(sub)

    info = sub.add_parser("info", help="print the reproduction record embedded in a video made here")
    info.add_argument("video", type=Path)

    presets = sub.add_parser("presets", help="list the preset tiers (their values depend on the model)")
    presets.add_argument("--model", default="tiny", help="show the tiers' values for this model (default: tiny)")
    download = sub.add_parser("download", help="fetch a hub model into the Hugging Face cache (resumable)")
    download.add_argument("model", nargs="?", default=None, help="hub id (default: ali-vilab/i2vgen-xl)")
    download.add_argument("--family", help=FAMILY_HELP)
    jobs_cli.add_parsers(sub)
    lint = sub.add_parser("lint", help="check a prompt for wording the model does not understand")
    lint.add_argument("prompt")
    lint.add_argument("--negative-prompt", default="")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.command == "presets":
            return _presets(args.model)
        if args.command == "lint":
            return _lint(args)
        if args.command == "info":
            return _info(args)
        if args.command == "plan":
            return _plan(args)
        if args.command == "bench":
            return run_bench_command(args, EXIT_OK, EXIT_FAILED)
        if args.command == "download":
            return _download(args)
        if args.command == "jobs":
            return jobs_cli.list_jobs(args)
        if args.command == "requeue":
            return jobs_cli.requeue(args)
        if args.command == "gpu-status":
            from i2v.gpu.monitor import GpuMonitor

            print(json.dumps(GpuMonitor().snapshot().to_dict(), indent=2))
            return EXIT_OK
        return _generate(args)
    except BadInputError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except I2VError as exc:  # handled failures (model missing, NaN in every precision): the message says it all
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line and exit 1; -v logs the traceback
        log.info("unexpected failure", exc_info=True)
        print(f"error: unexpected failure ({type(exc).__name__}: {_one_line(exc)}); run again with -v for the "
              "details and report it.", file=sys.stderr)
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _download(args) -> int:
    """Fetch once with progress bars; the app then loads from the cache, also with HF_HUB_OFFLINE=1."""
    from i2v.backends import BUILT_IN_MODELS, backend_class_for
    from i2v.errors import ModelNotAvailableError
    from i2v.engine.request import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    if model in BUILT_IN_MODELS or Path(model).expanduser().is_dir():
        raise BadInputError(f"'{model}' is not a hub model: there is nothing to download.")
    # Each family fetches its own files (split weights, its tokenizer's files): the backend's own download.
    backend = backend_class_for(model, args.family)(model)
    try:
        folder, _source, commit = backend._download()
    except ModelNotAvailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{model} is in the Hugging Face cache: {folder} (commit {commit})")
    return EXIT_OK


def _presets(model: str) -> int:
    from i2v.backends import spec_for
    from i2v.engine.presets import default_presets, presets_for_model

    spec = spec_for(model)
    print(f"Presets for {model} ({spec.family}):")
    # Only the tiers this model is offered: turbo needs a distilled LoRA that most models have none of.
    for preset in presets_for_model(default_presets(), spec.preset_key).values():
        print(f"{preset.name:14} {preset.description}")
    return EXIT_OK


def _plan(args) -> int:
    from i2v.backends import identify
    from i2v.gpu.hardware import FixedGpuInfo
    from i2v.gpu.monitor import GpuMonitor
    from i2v.engine import step_times
    from i2v.paths import cache_dir
    from i2v.planning.planner import MemoryPlanner, decode_description
    from i2v.engine.presets import DEFAULT_PRESET, get_preset
    from i2v.engine.resolve import shape_for, with_transformer_file

    model = args.model or default_model()
    identified = identify(model, args.family)
    spec, file_notices = with_transformer_file(identified.backend.spec, model, args.family, args.transformer_file)
    preset = get_preset(args.preset or DEFAULT_PRESET, preset_key=spec.preset_key)
    two_stage = preset.two_stage and spec.takes_upsampler
    spec = spec.for_tier(two_stage=two_stage, unguided=preset.sigmas is not None)  # as the tier runs it
    if (args.width is None) != (args.height is None):
        raise BadInputError("Give both --width and --height, or neither.")
    if args.width is None and not 0.1 <= args.aspect <= 10:
        raise BadInputError("--aspect is width/height of the image, e.g. 1.78 for 16:9.")
    width, height, frames, _, notices = shape_for(spec, preset, frames=args.frames, resolution=args.resolution,
                                                  width=args.width, height=args.height, aspect=args.aspect)
    if args.gpu_memory is not None:
        if not 0.5 <= args.gpu_memory <= 1024:
            raise BadInputError("--gpu-memory is the card's free memory in GiB, e.g. 12.")
        gpu_info = FixedGpuInfo.single(name=f"a {args.gpu_memory:g} GiB GPU", total_gib=args.gpu_memory,
                                      bf16=not args.no_bf16, ram_gib=args.ram)
    else:
        gpu_info = GpuMonitor()  # NVML: no torch import, no CUDA context
    decision = MemoryPlanner(gpu_info).plan(spec, width, height, frames, device=None, dtype=args.dtype)
    steps = args.steps if args.steps is not None else preset.steps
    expected = None if two_stage else step_times.estimate(  # two stages: steps at two sizes, not learned
        cache_dir(), device_name=decision.plan.gpu_name or "CPU", family=spec.family,
        dtype=decision.plan.dtype, width=decision.width, height=decision.height, frames=decision.frames,
        steps=steps,
    )
    report = {
        "model": model,
        "family": identified.family,
        "family_name": spec.family,
        "family_known_by": identified.how,
        "steps": steps,
        "denoising": "two-stage" if two_stage else "single-stage",
        "expected_denoise_seconds": round(expected, 1) if expected is not None else None,
        "requested": {"width": width, "height": height, "frames": frames},
        "planned": {"width": decision.width, "height": decision.height, "frames": decision.frames},
        "plan": decision.plan.to_dict(),
        "vram_estimate": decision.estimate.to_dict() if decision.estimate else None,
        "notices": [n.to_dict() for n in [*notices, *decision.notices, *file_notices]],
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return EXIT_OK
    plan = decision.plan
    where = plan.gpu_name or "CPU"
    print(f"{model}: {spec.family} (family {identified.family}, known by {identified.how})")
    print(f"on {where}: {decision.width}×{decision.height} × {decision.frames} frames, {plan.dtype}, "
          f"{decode_description(spec, plan)}"
          f"{OFFLOAD_WORDS[plan.cpu_offload]}{', transformer weights in fp8' if plan.fp8_weights else ''}")
    if two_stage:
        print(f"two stages: {steps} steps at {decision.width // 2}×{decision.height // 2}, the ×2 latent upsampler, "
              f"then the refinement at {decision.width}×{decision.height}")
    if decision.estimate:
        print(f"predicted peak VRAM: {decision.estimate.peak_gib:.1f} GiB ({decision.estimate.stage} stage)")
    if expected is not None:
        print(f"expected denoising time: ~{expected:.0f} s for {steps} steps (learned from earlier jobs here)")
    for notice in report["notices"]:
        print(f"  - {notice['message']}")
    return EXIT_OK


def _crop_focus(text: str) -> tuple[float, float]:
    """``0.3,0.5`` → (0.3, 0.5); the range is checked with the request (framing.check_framing)."""
    parts = text.split(",")
    try:
        x, y = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers from 0 to 1, e.g. 0.5,0.3); got {text!r}") from None
    return x, y


def _aspect(text: str) -> float:
    """``1.78`` or ``16/9`` (what the README shows) → width / height."""
    width, slash, height = text.partition("/")
    try:
        value = float(width) / float(height) if slash else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an aspect ratio: write 1.5 or 16/9") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an aspect ratio: write 1.5 or 16/9")
    return value


def _info(args) -> int:
    import subprocess

    from i2v.engine.video import read_mp4_comment

    if not args.video.is_file():
        raise BadInputError(f"{args.video} does not exist.")
    try:
        comment = read_mp4_comment(args.video)
    except subprocess.CalledProcessError:
        raise BadInputError(f"{args.video} is not a video ffmpeg can read.") from None
    try:
        record = json.loads(comment)
    except json.JSONDecodeError:
        raise BadInputError(f"{args.video} carries no I2V Studio record.") from None
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return EXIT_OK


def _lint(args) -> int:
    from i2v.guidance.prompt_lint import lint_prompt

    findings = lint_prompt(args.prompt, args.negative_prompt)
    for finding in findings:
        print(f"{finding.code}: {finding}")
    if not findings:
        print("no findings")
    return EXIT_OK


def _requests(args) -> list[GenerationRequest]:
    outputs: list[Path | None] = [args.output] * len(args.prompt)
    if args.output is not None and len(args.prompt) > 1:
        outputs = [args.output.with_name(f"{args.output.stem}_p{i:02d}{args.output.suffix}")
                   for i in range(1, len(args.prompt) + 1)]
    return [
        GenerationRequest(
            image=args.image, prompt=prompt, negative_prompt=args.negative_prompt, preset=args.preset,
            resolution=args.resolution, width=args.width, height=args.height, frames=args.frames,
            steps=args.steps, guidance=args.guidance, fps=args.fps, seeds=tuple(args.seed),
            candidates=args.candidates, auto_enhance=args.auto_enhance, audio=args.audio, model=args.model or default_model(),
            family=args.family, transformer_file=args.transformer_file, dtype=args.dtype, device=args.device,
            output_path=output, last_image=args.last_image, loras=tuple(parse_lora(text) for text in args.lora),
            framing=args.framing, crop_focus=args.crop_focus,
        )
        for prompt, output in zip(args.prompt, outputs)
    ]


def _generate(args) -> int:
    from i2v.engine.engine import Engine
    from i2v.engine.progress import ProgressEvent

    engine = Engine(output_dir=args.output_dir)
    requests = _requests(args)
    for request in requests:  # every request is checked before the first one runs
        engine.prepare(request)

    show_progress = sys.stderr.isatty() and not args.json

    def progress(event: ProgressEvent) -> None:
        if show_progress:
            print(f"\r{event.stage:8} candidate {event.candidate}/{event.candidates} "
                  f"{100 * event.fraction:5.1f}% {event.elapsed_s:7.1f}s", end="", file=sys.stderr, flush=True)

    status = EXIT_OK
    for request in requests:
        try:
            result = engine.generate(request, on_progress=progress)
        except JobCancelled:
            raise KeyboardInterrupt from None
        except BadInputError:
            raise
        except I2VError as exc:
            print(f"\nerror: {exc}" if show_progress else f"error: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        if show_progress:
            print(file=sys.stderr)
        for video in result.videos:
            if args.json:
                print(json.dumps({**video.record, "path": str(video.path), "sidecar": str(video.sidecar_path)},
                                 ensure_ascii=False))
            else:
                print(f"{video.path}  seed {video.seed}  {video.record['video']['frames']} frames "
                      f"@ {video.record['video']['fps']} fps  {video.record['video']['width']}×"
                      f"{video.record['video']['height']}")
        if not args.json:
            for finding in result.model_warnings + result.notices + result.warnings:
                print(f"  - {finding}")
    return status
