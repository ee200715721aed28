"""CogVideoX-5b-I2V (``THUDM/CogVideoX-5b-I2V``, a diffusion transformer at a fixed 720×480): the spec, backend and
loading checks (``backend``) and its toy-size twin ``tiny-cogvideox`` (``tiny``)."""
from i2v.backends.cogvideox.backend import COGVIDEOX_SPEC, PIPELINE_CLASS, CogVideoXBackend
from i2v.backends.cogvideox.tiny import TINY_COGVIDEOX_NAME, TinyCogVideoXBackend

__all__ = ["COGVIDEOX_SPEC", "CogVideoXBackend", "PIPELINE_CLASS", "TINY_COGVIDEOX_NAME", "TinyCogVideoXBackend"]
