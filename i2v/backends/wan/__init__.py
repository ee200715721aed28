"""Wan 2.1 image-to-video, 480P and 720P checkpoints: what it is before loading (``spec``: sizes by area, the frame
rule, the memory profile, hub-id rules), what its folder holds and the load-time checks (``loading``), the backend
and its sampler shift (``backend``), the real architecture's configuration (``config``) and the toy-size twin
``tiny-wan`` (``tiny``)."""
from i2v.backends.wan.backend import Wan720PBackend, WanBackend, wan_backend_class
from i2v.backends.wan.loading import PIPELINE_CLASS
from i2v.backends.wan.spec import WAN_720P_SPEC, WAN_SPEC, is_wan_i2v_hub_id
from i2v.backends.wan.tiny import TINY_WAN_NAME, TinyWanBackend

__all__ = ["PIPELINE_CLASS", "TINY_WAN_NAME", "TinyWanBackend", "WAN_720P_SPEC", "WAN_SPEC", "Wan720PBackend",
           "WanBackend", "is_wan_i2v_hub_id", "wan_backend_class"]
