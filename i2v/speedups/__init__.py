"""Speedups for the denoiser, each switchable on its own so its effect can be measured: the settings
(``settings.Speedups``), how they are put on the resident pipeline and taken off again (``pipeline``: channels-last,
attention processor, regional torch.compile) and I2VGen-XL's UNet step cache (``unet_step_cache``)."""
from i2v.speedups.pipeline import apply_speedups, compile_cache_dir, revert_speedups
from i2v.speedups.settings import (ATTENTION_CHOICES, ATTENTION_LABELS, MAX_STEP_CACHE_INTERVAL, Speedups,
                                   check_step_cache_interval)
from i2v.speedups.unet_step_cache import StepCacheStats, step_cache, supports_step_cache

__all__ = ["ATTENTION_CHOICES", "ATTENTION_LABELS", "MAX_STEP_CACHE_INTERVAL", "StepCacheStats", "Speedups",
           "apply_speedups", "check_step_cache_interval", "compile_cache_dir", "revert_speedups", "step_cache",
           "supports_step_cache"]
