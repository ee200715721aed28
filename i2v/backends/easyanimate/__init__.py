"""EasyAnimate V5.1 image-to-video (``alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers``): the spec, backend and
loading checks (``backend``) and its toy-size twin ``tiny-easyanimate`` (``tiny``)."""
from i2v.backends.easyanimate.backend import EASYANIMATE_SPEC, PIPELINE_CLASS, EasyAnimateBackend
from i2v.backends.easyanimate.tiny import TINY_EASYANIMATE_NAME, TinyEasyAnimateBackend

__all__ = ["EASYANIMATE_SPEC", "EasyAnimateBackend", "PIPELINE_CLASS", "TINY_EASYANIMATE_NAME",
           "TinyEasyAnimateBackend"]
