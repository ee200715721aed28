"""Wan 2.2 image-to-video, TI2V-5B and I2V-A14B: what each is before loading (``spec``: sizes by area, the frame
rules, the memory profiles, hub-id rules), which checkpoint a folder holds and the load-time checks (``loading``), the
backends (``backend``), the real architectures' configurations (``config``) and the toy-size twins
``tiny-wan22-ti2v`` and ``tiny-wan22-a14b`` (``tiny``)."""
from i2v.backends.wan22.backend import BACKENDS, Wan22A14BBackend, Wan22Backend, Wan22TI2VBackend
from i2v.backends.wan22.loading import folder_kind, refuse_text_to_video
from i2v.backends.wan22.spec import A14B_SPEC, TI2V_5B_SPEC, wan22_kind
from i2v.backends.wan22.tiny import TINY_A14B_NAME, TINY_TI2V_NAME, TinyWan22A14BBackend, TinyWan22TI2VBackend

__all__ = ["A14B_SPEC", "BACKENDS", "TINY_A14B_NAME", "TINY_TI2V_NAME", "TI2V_5B_SPEC", "TinyWan22A14BBackend",
           "TinyWan22TI2VBackend", "Wan22A14BBackend", "Wan22Backend", "Wan22TI2VBackend", "folder_kind",
           "refuse_text_to_video", "wan22_kind"]
