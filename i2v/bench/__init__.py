"""``python -m i2v bench``: our engine against the pipeline called plainly (``runner``), each speedup on and off
(``speedups``), the transformer families against themselves (``transformer``: LoRA, step cache, turbo, compile),
the tiny models' latency (``latency``), the NVML peak (``memory``) and frame similarity
(``quality``). Figures go to docs/BENCHMARKS.md."""
