"""The GPUs, behind small interfaces: what the planner needs (``hardware.GpuInfo``: ``TorchCudaInfo`` for the
machine, ``FixedGpuInfo`` for a card given up front) and the live NVML monitor behind ``/gpu_status``
(``monitor.GpuMonitor``, with ``FakeGpuMonitor`` for tests). Nothing here touches CUDA or NVML at import time."""
from i2v.gpu.hardware import FixedGpuInfo, GpuDevice, GpuInfo, TorchCudaInfo

__all__ = ["FixedGpuInfo", "GpuDevice", "GpuInfo", "TorchCudaInfo"]
