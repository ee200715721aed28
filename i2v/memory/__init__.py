"""Peak VRAM prediction from a model's architecture (docs/VRAM.md): the shared units and the estimate
(``estimate``: ``VramEstimate``, the ``MemoryProfile`` interface), the UNet profile of I2VGen-XL (``unet``) and the
profile of the diffusion transformers (``transformer``). Each profile predicts its own peak; ``i2v.planning`` uses
them to choose a plan."""
from i2v.memory.estimate import GIB, MemoryProfile, VramEstimate
from i2v.memory.transformer import TransformerMemoryProfile
from i2v.memory.unet import UNetMemoryProfile

__all__ = ["GIB", "MemoryProfile", "TransformerMemoryProfile", "UNetMemoryProfile", "VramEstimate"]
