"""Known bad parameter combinations, reported next to the controls before a run."""
from __future__ import annotations

from i2v.findings import Finding

FEW_STEPS = 25
HIGH_GUIDANCE = 11.0
# Work relative to the balanced preset (512² px × 16 frames × 50 steps). The high-quality preset is ~5.4×;
# beyond ~8× a run takes many minutes on a fast GPU and memory grows with pixels × frames.
BALANCED_WORK = 512 * 512 * 16 * 50
HEAVY_WORK_RATIO = 8.0


def parameter_traps(
    *, width: int, height: int, frames: int, steps: int, guidance: float, negative_prompt: str = ""
) -> list[Finding]:
    found: list[Finding] = []
    if steps < FEW_STEPS and guidance > HIGH_GUIDANCE:
        found.append(
            Finding(
                "params.few_steps_high_guidance",
                f"{steps} steps with guidance {guidance:g}: with fewer than {FEW_STEPS} steps, guidance above "
                f"{HIGH_GUIDANCE:g} leaves frames under-denoised and distorted.",
                f"Use at least {FEW_STEPS} steps, or guidance {HIGH_GUIDANCE:g} or lower.",
            )
        )
    ratio = width * height * frames * steps / BALANCED_WORK
    if ratio > HEAVY_WORK_RATIO:
        found.append(
            Finding(
                "params.heavy_run",
                f"{width}×{height} × {frames} frames × {steps} steps is about {ratio:.0f}× the work of the balanced "
                "preset: slow, and the most likely to run out of GPU memory.",
                "Check the motion with the fast-check preset first, then raise one of resolution, frames or steps.",
            )
        )
    if guidance <= 1.0 and negative_prompt.strip():
        found.append(
            Finding(
                "params.negative_prompt_unused",
                f"Guidance {guidance:g} turns classifier-free guidance off, so the negative prompt has no effect.",
                "Raise guidance above 1 (9 is the usual value) to use the negative prompt.",
            )
        )
    return found
