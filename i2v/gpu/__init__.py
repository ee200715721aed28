"""The GPUs, behind small interfaces: what the planner needs (``hardware.GpuInfo``: ``TorchCudaInfo`` for the
machine, ``FixedGpuInfo`` for a card given up front), the live NVML monitor behind ``/gpu_status``
(``monitor.GpuMonitor``), what a reading holds and its warning levels (``snapshot``), and a monitor with simulated
GPUs for tests (``fake_monitor.FakeGpuMonitor``). Nothing here touches CUDA or NVML at import time."""
from i2v.gpu.hardware import FixedGpuInfo, GpuDevice, GpuInfo, TorchCudaInfo

__all__ = ["FixedGpuInfo", "GpuDevice", "GpuInfo", "TorchCudaInfo"]
