"""LTX-2 image-to-video, with sound: what it is before loading (``spec``: the 8N+1 frame rule, sides multiple of 32,
24 fps, the memory profile, hub-id rule), what its folder holds and the load-time checks (``loading``), the backend
that returns video and audio (``backend``), its two-stage path (``stages``, ``upsampler``: the ×2 latent upsampler),
the real architecture's configuration (``config``) and the toy-size twin ``tiny-ltx2`` with its upsampler (``tiny``)."""
from i2v.backends.ltx2.backend import LTX2Backend
from i2v.backends.ltx2.loading import PIPELINE_CLASS
from i2v.backends.ltx2.spec import LTX2_SPEC, is_ltx2_hub_id
from i2v.backends.ltx2.tiny import TINY_LTX2_NAME, TINY_UPSAMPLER_NAME, TinyLTX2Backend, tiny_upsampler_folder

__all__ = ["LTX2Backend", "LTX2_SPEC", "PIPELINE_CLASS", "TINY_LTX2_NAME", "TINY_UPSAMPLER_NAME", "TinyLTX2Backend",
           "is_ltx2_hub_id", "tiny_upsampler_folder"]
