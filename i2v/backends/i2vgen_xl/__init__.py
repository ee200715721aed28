"""I2VGen-XL (``ali-vilab/i2vgen-xl``, a UNet; deprecated upstream, pinned and tested here): the spec and backend
(``backend``), the real architecture's configuration (``config``), the toy-size ``tiny`` model (``tiny``) and the
full-size random-weight model for GPU figures (``full_size_random``)."""
from i2v.backends.i2vgen_xl.backend import I2VGEN_XL_SPEC, PIPELINE_CLASS, I2VGenXLBackend
from i2v.backends.i2vgen_xl.full_size_random import FULL_SIZE_RANDOM_NAME, FullSizeRandomBackend
from i2v.backends.i2vgen_xl.tiny import TINY_NAME, TinyBackend

__all__ = ["FULL_SIZE_RANDOM_NAME", "FullSizeRandomBackend", "I2VGEN_XL_SPEC", "I2VGenXLBackend", "PIPELINE_CLASS",
           "TINY_NAME", "TinyBackend"]
