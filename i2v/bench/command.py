"""``python -m i2v bench``: its arguments and its dispatch (the I2VGen-XL preset table against the plain pipeline,
a transformer family's speedups table, the off-GPU latency, the full-size transformers on a GPU). Kept apart from
``cli.py`` so that the command line's main file stays about the commands users run every day."""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path

from i2v.errors import BadInputError


def add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="I2VGen-XL: time the presets against the plain diffusers pipeline; a "
                                           "transformer family: its speedups, LoRA and turbo against itself")
    bench.add_argument("--model", default="tiny")
    bench.add_argument("--presets", default="fast-check,balanced,high-quality", help="comma-separated")
    bench.add_argument("--resolution", type=int, help="override the presets' resolution tier")
    bench.add_argument("--steps", type=int, help="override the presets' steps (quick checks)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs per preset (medians reported)")
    bench.add_argument("--speedups-preset", default="balanced",
                       help="preset on which each optimisation is measured on/off ('none' to skip; default "
                            "balanced, or the first preset when balanced is not benched); a transformer family's "
                            "whole bench runs on it")
    bench.add_argument("--compile", action="store_true",
                       help="also measure regional torch.compile (the UNet's or the transformer's blocks: minutes on a "
                            "CPU)")
    bench.add_argument("--markdown", type=Path, default=Path("docs/BENCHMARKS.md"), help="table output")
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")
    bench.add_argument("--output-dir", type=Path, help="where the bench's videos go (default: a temp folder)")
    bench.add_argument("--latency", action="store_true",
                       help="also measure off-GPU latency: app.py page-ready time and /gpu_status under polling")
    bench.add_argument("--latency-only", action="store_true",
                       help="only the latency part (no presets); updates just that section of --markdown")
    bench.add_argument("--poll-seconds", type=float, default=10.0, help="how long /gpu_status is polled")
    bench.add_argument("--starts", type=int, default=3, help="fresh app.py starts timed to page-ready")
    bench.add_argument("--tier-runs", type=int, default=2,
                       help="with --latency: jobs per tier (fast-check, balanced) timed click to video; 0: none")
    bench.add_argument("--note", help="a sentence added to the Markdown, e.g. what else ran on the machine")
    bench.add_argument("--full-size", help="GPU only: comma-separated wan, wan22-ti2v, wan22-a14b: the real-size "
                                           "transformer with random weights, placed as planned for --speedups-preset "
                                           "(default balanced), peak vs prediction")
    bench.add_argument("--gpu-memory", type=float, help="with --full-size: plan for (and cap to) a card of this many GiB")


def run_bench_command(args, exit_ok: int, exit_failed: int) -> int:
    from i2v.bench.runner import run_bench, write_outputs
    from i2v.bench.latency import run_latency_bench
    from i2v.engine.presets import default_presets
    from i2v.engine.record import library_versions

    if args.full_size:
        from i2v.bench.full_size import run_full_size_bench

        command = "python -m i2v bench " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else [])
        rows = run_full_size_bench([m.strip() for m in args.full_size.split(",") if m.strip()],
                                   preset=args.speedups_preset, gpu_memory_gib=args.gpu_memory,
                                   steps=args.steps or 2, markdown_path=args.markdown, json_path=args.json,
                                   command=command.strip())
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return exit_ok if all(row.failure is None for row in rows) else exit_failed
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not 1 <= args.repeats <= 20:
        raise BadInputError("--repeats must be 1..20.")
    unknown = [p for p in presets if p not in default_presets()]
    if unknown or not presets:
        raise BadInputError(f"Unknown preset(s) {unknown}; choose from {', '.join(default_presets())}.")
    speedups_preset = None if args.speedups_preset == "none" else \
        (args.speedups_preset if args.speedups_preset in presets else presets[0])
    if args.speedups_preset not in ("none", "balanced", *presets):
        raise BadInputError(f"--speedups-preset {args.speedups_preset!r} is not among the benched presets "
                            f"({', '.join(presets)}); name one of them or 'none'.")
    latency_wanted = args.latency or args.latency_only
    command = "python -m i2v bench " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else [])
    if not args.latency_only and not _bench_compares_with_the_pipeline(args.model):
        if latency_wanted:
            raise BadInputError("--latency measures app.py with an I2VGen-XL model (e.g. --model tiny); run it on "
                                "its own, not with a transformer family's bench.")
        if speedups_preset is None:
            raise BadInputError(f"'{args.model}' gets the transformer speedups table on one preset: give it with "
                                "--speedups-preset NAME (default balanced), not 'none'.")
        return _bench_transformer(args, speedups_preset, command.strip(), exit_ok)
    if latency_wanted and not (0 < args.poll_seconds <= 600 and 1 <= args.starts <= 20 and 0 <= args.tier_runs <= 10):
        raise BadInputError("--poll-seconds must be in (0, 600], --starts 1..20 and --tier-runs 0..10.")
    rows, meta = [], {"model": args.model, "versions": library_versions()}
    if not args.latency_only:
        with tempfile.TemporaryDirectory(prefix="i2v-bench-") as scratch:
            rows, meta = run_bench(model=args.model, presets=presets, output_dir=args.output_dir or Path(scratch),
                                   resolution=args.resolution, steps=args.steps, repeats=args.repeats,
                                   speedups_preset=speedups_preset, with_compile=args.compile)
    meta["note"] = args.note
    # After the presets, not during: the app's start and the polling would otherwise compete for the CPU.
    latency = run_latency_bench(model=args.model, starts=args.starts, poll_seconds=args.poll_seconds,
                                tier_runs=args.tier_runs) if latency_wanted else None
    print(write_outputs(rows, meta, command.strip(), args.markdown, args.json, latency=latency))
    return exit_ok


def _bench_transformer(args, preset: str, command: str, exit_ok: int) -> int:
    from i2v.bench.runner import BENCH_PROMPT, BENCH_SEED, synthetic_image
    from i2v.bench.transformer import run_transformer_bench, write_transformer_outputs

    with tempfile.TemporaryDirectory(prefix="i2v-bench-") as scratch:
        rows, meta = run_transformer_bench(
            model=args.model, preset=preset, output_dir=args.output_dir or Path(scratch), resolution=args.resolution,
            steps=args.steps, repeats=args.repeats, with_compile=args.compile, image=synthetic_image(),
            prompt=BENCH_PROMPT, seed=BENCH_SEED)
    meta["note"] = args.note
    print(write_transformer_outputs(rows, meta, command, args.markdown, args.json))
    return exit_ok


def _bench_compares_with_the_pipeline(model: str) -> bool:
    """I2VGen-XL models get the preset table against the plain I2VGenXLPipeline (the documented baseline); the
    transformer families have no such baseline yet and get their speedups table, our engine against itself."""
    from i2v.backends import backend_class_for
    from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend

    return issubclass(backend_class_for(model), I2VGenXLBackend)
