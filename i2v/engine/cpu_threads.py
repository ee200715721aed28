"""How many threads torch may use while a toy model runs on the CPU.

The built-in random-weight models (``tiny`` and its siblings) are for trying the app, often on a small machine
shared with other work. There, torch's default of one thread per core collapses: its OpenMP workers spin at the
barrier that ends every operation, and when another process holds a core each of a toy model's thousands of tiny
operations waits for a scheduler slice. Measured on a 2-core machine at a load of about 10 (December 2026,
``tiny`` fast-check, 128×128 × 8 frames × 30 steps, interleaved in one process): 2 threads 64-124 s, 1 thread
6.9-7.7 s. A toy model's operations are too small to gain from a second thread, so they run on one.
Real models keep torch's default: their operations are large enough for every core to pay.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

TOY_MODEL_CPU_THREADS = 1


@contextlib.contextmanager
def cpu_threads_for(random_weights: bool, device: str) -> Iterator[None]:
    """Within the block, torch uses ``TOY_MODEL_CPU_THREADS`` when a random-weight model runs on the CPU; the
    setting is the process's, so it is restored afterwards (the engine runs one job per device at a time)."""
    if not random_weights or device != "cpu":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(TOY_MODEL_CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)
