"""The GPU monitor, through a fake NVML module that drives the real GpuMonitor code paths (no GPU needed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from i2v.gpu.hardware import GpuDevice
from i2v.gpu.fake_monitor import FakeGpu, FakeGpuMonitor
from i2v.gpu.monitor import GpuMonitor
from i2v.gpu.snapshot import INIT_RETRY_SECONDS, ProcessMemory, Snapshot, torch_memory

pynvml = pytest.importorskip("pynvml")

REPO = Path(__file__).resolve().parent.parent
GIB = 2**30


class FakeNvml:
    """A module-like stand-in for pynvml: fixed answers per GPU, chosen calls raising real NVMLError subclasses,
    and a count of every call so tests can see how many NVML reads happened."""

    NVMLError = pynvml.NVMLError
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, gpus: list[dict], *, fail: dict | None = None, init_error: type | None = None,
                 delay: float = 0.0):
        self.gpus = gpus
        self.fail = fail or {}  # {(function name, gpu index): NVMLError subclass}
        self.init_error = init_error
        self.delay = delay
        self.calls: Counter[str] = Counter()

    def _enter(self, function: str, index: int | None = None) -> None:
        self.calls[function] += 1
        error = self.fail.get((function, index))
        if error is not None:
            raise error()

    def nvmlInit(self):
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise self.init_error()

    def nvmlShutdown(self):
        self._enter("nvmlShutdown")

    def nvmlDeviceGetCount(self):
        self._enter("nvmlDeviceGetCount")
        time.sleep(self.delay)  # widens the window in which concurrent callers could race
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._enter("nvmlDeviceGetHandleByIndex", index)
        return ("handle", index)

    def nvmlDeviceGetName(self, handle):
        self._enter("nvmlDeviceGetName", handle[1])
        return self.gpus[handle[1]]["name"]

    def nvmlDeviceGetUUID(self, handle):
        self._enter("nvmlDeviceGetUUID", handle[1])
        return self.gpus[handle[1]]["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._enter("nvmlDeviceGetMemoryInfo", handle[1])
        gpu = self.gpus[handle[1]]
        return SimpleNamespace(total=gpu["total"], used=gpu["used"], free=gpu["total"] - gpu["used"])

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._enter("nvmlDeviceGetUtilizationRates", handle[1])
        return SimpleNamespace(gpu=self.gpus[handle[1]]["util"], memory=10)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._enter("nvmlDeviceGetTemperature", handle[1])
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self.gpus[handle[1]]["temp"]

    def nvmlDeviceGetPowerUsage(self, handle):
        self._enter("nvmlDeviceGetPowerUsage", handle[1])
        return self.gpus[handle[1]]["power_mw"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle[1])
        return self.gpus[handle[1]]["limit_mw"]

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        self._enter("nvmlDeviceGetCudaComputeCapability", handle[1])
        return self.gpus[handle[1]]["cc"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle[1])
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.gpus[handle[1]]["procs"]]


def gpu(name="NVIDIA RTX A6000", total=48 * GIB, used=4 * GIB, util=37, temp=61, power_mw=123_456,
        limit_mw=300_000, cc=(8, 6), uuid="GPU-aaaa-1111", procs=()) -> dict:
    return dict(name=name, total=total, used=used, util=util, temp=temp, power_mw=power_mw, limit_mw=limit_mw,
                cc=cc, uuid=uuid, procs=list(procs))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _all_gpus_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def assert_json_payload(snap: Snapshot) -> dict:
    payload = json.loads(json.dumps(snap.to_dict()))
    assert set(payload) == {
        "gpu_present", "reason", "gpus", "torch_allocated_bytes", "torch_reserved_bytes",
        "system_ram_total_bytes", "system_ram_available_bytes", "taken_at", "warning_level",
    }
    return payload


# --- no GPU -------------------------------------------------------------------------------------------------


def test_real_pynvml_without_driver_reports_no_gpu_and_why():
    monitor = GpuMonitor()
    snap = monitor.snapshot()  # must not raise whatever this machine has
    payload = assert_json_payload(snap)
    monitor.shutdown()
    if snap.gpu_present:
        pytest.skip("this machine has an NVIDIA driver and GPU; the no-driver path is covered with a fake below")
    assert payload["gpus"] == [] and payload["warning_level"] == "ok"
    assert "NVML" in snap.reason or "driver" in snap.reason
    assert monitor.devices() == []


def test_library_not_found_gives_reason_with_driver_hint():
    nvml = FakeNvml([gpu()], init_error=pynvml.NVMLError_LibraryNotFound)
    snap = GpuMonitor(nvml=nvml).snapshot()
    assert not snap.gpu_present and snap.gpus == ()
    assert snap.reason == "NVML Shared Library Not Found: no NVIDIA driver on this machine"
    assert snap.warning_level == "ok"
    assert_json_payload(snap)


def test_failed_init_is_retried_at_most_every_30_seconds_and_a_new_driver_is_picked_up():
    clock = Clock()
    nvml = FakeNvml([gpu()], init_error=pynvml.NVMLError_DriverNotLoaded)
    monitor = GpuMonitor(cache_seconds=0.5, clock=clock, nvml=nvml)
    assert "driver" in monitor.snapshot().reason
    for step in (0.6, 5.0, 20.0, INIT_RETRY_SECONDS - 0.1):
        clock.now = 1000.0 + step  # past the cache, before the retry interval
        assert not monitor.snapshot().gpu_present
    assert nvml.calls["nvmlInit"] == 1

    nvml.init_error = None  # the driver is loaded meanwhile
    clock.now = 1000.0 + INIT_RETRY_SECONDS + 0.6  # past the retry interval and the last cached snapshot
    snap = monitor.snapshot()
    assert nvml.calls["nvmlInit"] == 2
    assert snap.gpu_present and snap.reason is None

    clock.now += 100.0
    monitor.snapshot()
    assert nvml.calls["nvmlInit"] == 2  # initialised once, not per snapshot


def test_driver_with_zero_gpus():
    snap = GpuMonitor(nvml=FakeNvml([])).snapshot()
    assert not snap.gpu_present and "no GPUs" in snap.reason


# --- full data ----------------------------------------------------------------------------------------------


def test_two_gpus_with_full_data_and_warning_levels():
    nvml = FakeNvml([
        gpu(name=b"NVIDIA A100-SXM4-80GB", total=80 * GIB, used=int(80 * GIB * 0.85), cc=(8, 0),
            uuid=b"GPU-0000"),  # bytes, as older pynvml returns
        gpu(name="Tesla T4", total=16 * GIB, used=1 * GIB, util=0, temp=35, power_mw=27_000, limit_mw=70_000,
            cc=(7, 5), uuid="GPU-1111"),
    ])
    snap = GpuMonitor(nvml=nvml).snapshot()
    assert snap.gpu_present and snap.reason is None and len(snap.gpus) == 2
    a100, t4 = snap.gpus
    assert a100.index == 0 and a100.name == "NVIDIA A100-SXM4-80GB" and a100.uuid == "GPU-0000"
    assert a100.memory_total_bytes == 80 * GIB
    assert a100.memory_used_bytes + a100.memory_free_bytes == 80 * GIB
    assert a100.memory_used_fraction == pytest.approx(0.85, abs=1e-6)
    assert a100.utilization_percent == 37 and a100.temperature_c == 61
    assert a100.power_draw_w == pytest.approx(123.456) and a100.power_limit_w == pytest.approx(300.0)
    assert a100.compute_capability == (8, 0) and a100.supports_bf16 is True
    assert a100.warning_level == "warning"
    assert t4.name == "Tesla T4" and t4.compute_capability == (7, 5) and t4.supports_bf16 is False
    assert t4.power_draw_w == pytest.approx(27.0) and t4.warning_level == "ok"
    assert snap.warning_level == "warning"  # the worst GPU
    assert snap.taken_at == pytest.approx(time.time(), abs=60)

    payload = assert_json_payload(snap)
    assert payload["gpus"][0]["compute_capability"] == [8, 0]
    assert payload["gpus"][0]["memory_used_fraction"] == pytest.approx(0.85, abs=1e-6)


@pytest.mark.parametrize(
    ("fraction", "level"),
    [(0.0, "ok"), (0.7999, "ok"), (0.80, "warning"), (0.9499, "warning"), (0.95, "critical"), (1.0, "critical")],
)
def test_warning_level_thresholds(fraction, level):
    total = 10_000 * GIB  # large enough that the fraction is exact in bytes
    snap = GpuMonitor(nvml=FakeNvml([gpu(total=total, used=int(total * fraction))])).snapshot()
    assert snap.gpus[0].warning_level == level and snap.warning_level == level


def test_critical_gpu_makes_snapshot_critical():
    nvml = FakeNvml([gpu(total=10 * GIB, used=GIB), gpu(total=10 * GIB, used=int(9.6 * GIB))])
    snap = GpuMonitor(nvml=nvml).snapshot()
    assert [g.warning_level for g in snap.gpus] == ["ok", "critical"] and snap.warning_level == "critical"


def test_unsupported_fields_are_none_and_the_rest_present():
    not_supported = pynvml.NVMLError_NotSupported
    nvml = FakeNvml([gpu(), gpu(name="GeForce GTX 1080")], fail={
        ("nvmlDeviceGetTemperature", 1): not_supported,
        ("nvmlDeviceGetPowerUsage", 1): not_supported,
        ("nvmlDeviceGetEnforcedPowerLimit", 1): not_supported,
        ("nvmlDeviceGetUtilizationRates", 1): not_supported,
        ("nvmlDeviceGetComputeRunningProcesses", 1): pynvml.NVMLError_NoPermission,
    })
    monitor = GpuMonitor(nvml=nvml)
    full, partial = monitor.snapshot().gpus
    assert full.temperature_c == 61 and full.power_draw_w is not None and full.utilization_percent == 37
    assert partial.name == "GeForce GTX 1080" and partial.memory_total_bytes == 48 * GIB
    assert partial.temperature_c is None and partial.power_draw_w is None and partial.power_limit_w is None
    assert partial.utilization_percent is None and partial.processes == ()
    assert partial.compute_capability == (8, 6) and partial.uuid == "GPU-aaaa-1111"
    assert_json_payload(monitor.snapshot())


def test_unknown_compute_capability_is_none_and_devices_fall_back_to_no_bf16():
    nvml = FakeNvml([gpu()], fail={("nvmlDeviceGetCudaComputeCapability", 0): pynvml.NVMLError_Unknown})
    monitor = GpuMonitor(nvml=nvml)
    g = monitor.snapshot().gpus[0]
    assert g.compute_capability is None and g.supports_bf16 is None
    (device,) = monitor.devices()
    assert device.compute_capability == (0, 0) and device.supports_bf16 is False


def test_gpu_whose_memory_info_fails_is_skipped(caplog):
    nvml = FakeNvml([gpu(name="lost"), gpu(name="fine")],
                    fail={("nvmlDeviceGetMemoryInfo", 0): pynvml.NVMLError_GpuIsLost})
    with caplog.at_level("WARNING", logger="i2v.gpu.monitor"):
        snap = GpuMonitor(nvml=nvml).snapshot()
    assert [g.name for g in snap.gpus] == ["fine"] and snap.gpus[0].index == 1
    assert snap.gpu_present
    assert any("GPU 0" in r.getMessage() for r in caplog.records)


def test_all_gpus_unreadable_means_no_gpu_present():
    nvml = FakeNvml([gpu()], fail={("nvmlDeviceGetMemoryInfo", 0): pynvml.NVMLError_GpuIsLost})
    snap = GpuMonitor(nvml=nvml).snapshot()
    assert not snap.gpu_present and "none could be read" in snap.reason


def test_failing_handle_skips_that_gpu_and_count_failure_gives_reason():
    nvml = FakeNvml([gpu(), gpu(name="second")],
                    fail={("nvmlDeviceGetHandleByIndex", 0): pynvml.NVMLError_Unknown})
    assert [g.name for g in GpuMonitor(nvml=nvml).snapshot().gpus] == ["second"]
    nvml = FakeNvml([gpu()], fail={("nvmlDeviceGetCount", None): pynvml.NVMLError_Unknown})
    snap = GpuMonitor(nvml=nvml).snapshot()
    assert not snap.gpu_present and "count" in snap.reason


def test_repeated_failures_are_logged_as_warning_once(caplog):
    clock = Clock()
    nvml = FakeNvml([gpu()], fail={("nvmlDeviceGetTemperature", 0): pynvml.NVMLError_NotSupported})
    monitor = GpuMonitor(clock=clock, nvml=nvml)
    with caplog.at_level("WARNING", logger="i2v.gpu.monitor"):
        for _ in range(5):
            clock.now += 1.0
            monitor.snapshot()
    assert nvml.calls["nvmlDeviceGetTemperature"] == 5
    assert len([r for r in caplog.records if "nvmlDeviceGetTemperature" in r.getMessage()]) == 1


# --- caching and threads ------------------------------------------------------------------------------------


def test_snapshot_is_cached_for_cache_seconds():
    clock = Clock()
    nvml = FakeNvml([gpu(), gpu()])
    monitor = GpuMonitor(cache_seconds=0.5, clock=clock, nvml=nvml)
    first = monitor.snapshot()
    clock.now += 0.4
    assert monitor.snapshot() is first
    assert nvml.calls["nvmlDeviceGetCount"] == 1 and nvml.calls["nvmlDeviceGetMemoryInfo"] == 2

    nvml.gpus[0]["used"] = 40 * GIB
    clock.now += 0.2  # 0.6 s after the first read
    second = monitor.snapshot()
    assert second is not first and second.gpus[0].memory_used_bytes == 40 * GIB
    assert nvml.calls["nvmlDeviceGetCount"] == 2 and nvml.calls["nvmlDeviceGetMemoryInfo"] == 4
    assert nvml.calls["nvmlInit"] == 1
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2  # handles are cached across reads


def test_twenty_threads_at_once_cost_one_read():
    nvml = FakeNvml([gpu()], delay=0.05)
    monitor = GpuMonitor(cache_seconds=60.0, nvml=nvml)
    barrier = threading.Barrier(20)
    results: list[Snapshot] = []
    results_lock = threading.Lock()

    def poll() -> None:
        barrier.wait()
        snap = monitor.snapshot()
        with results_lock:
            results.append(snap)

    threads = [threading.Thread(target=poll) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 20 and all(snap is results[0] for snap in results)
    assert nvml.calls["nvmlInit"] == 1 and nvml.calls["nvmlDeviceGetCount"] == 1


def test_cached_snapshots_are_cheap():
    monitor = GpuMonitor(cache_seconds=60.0, nvml=FakeNvml([gpu(), gpu()]))
    monitor.snapshot()
    start = time.perf_counter()
    for _ in range(1000):
        monitor.snapshot()
    assert time.perf_counter() - start < 0.2


# --- processes, devices, shutdown ---------------------------------------------------------------------------


def test_this_process_memory_is_picked_from_the_process_list_by_pid():
    me = os.getpid()
    nvml = FakeNvml([gpu(procs=[(me + 100_000, 5 * GIB), (me, 2 * GIB), (me + 200_000, None)])])
    g = GpuMonitor(nvml=nvml).snapshot().gpus[0]
    assert g.this_process_used_bytes == 2 * GIB
    assert [p.pid for p in g.processes] == [me + 100_000, me, me + 200_000]
    assert g.processes[2].used_bytes is None
    mine = next(p for p in g.processes if p.pid == me)
    if Path("/proc/self/comm").exists():
        assert mine.name == Path("/proc/self/comm").read_text().strip()
    assert g.processes[0].name is None  # no such process here


def test_this_process_absent_from_the_list_is_none():
    nvml = FakeNvml([gpu(procs=[(os.getpid() + 100_000, GIB)])])
    assert GpuMonitor(nvml=nvml).snapshot().gpus[0].this_process_used_bytes is None


def test_devices_implement_gpu_info_with_free_memory_and_bf16():
    nvml = FakeNvml([
        gpu(name="A", total=24 * GIB, used=4 * GIB, cc=(8, 9), uuid="GPU-aaaa"),
        gpu(name="B", total=16 * GIB, used=6 * GIB, cc=(7, 5), uuid="GPU-bbbb"),
    ])
    devices = GpuMonitor(nvml=nvml).devices()
    assert devices == [
        GpuDevice(0, "A", 24 * GIB, 20 * GIB, (8, 9), True),
        GpuDevice(1, "B", 16 * GIB, 10 * GIB, (7, 5), False),
    ]
    assert devices[1].torch_device == "cuda:1"


@pytest.mark.parametrize(
    ("visible", "names"),
    [("1", ["B"]), ("1,0", ["B", "A"]), ("GPU-bbbb", ["B"]), ("0,7,1", ["A"]), ("", []), ("-1", [])],
)
def test_devices_follow_cuda_visible_devices(monkeypatch, visible, names):
    nvml = FakeNvml([gpu(name="A", uuid="GPU-aaaa-1"), gpu(name="B", uuid="GPU-bbbb-2")])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    devices = GpuMonitor(nvml=nvml).devices()
    assert [d.name for d in devices] == names and [d.index for d in devices] == list(range(len(names)))


def test_devices_without_gpu_are_empty():
    assert GpuMonitor(nvml=FakeNvml([], init_error=pynvml.NVMLError_LibraryNotFound)).devices() == []


def test_shutdown_releases_nvml_only_if_initialised():
    nvml = FakeNvml([gpu()])
    monitor = GpuMonitor(nvml=nvml)
    monitor.shutdown()
    assert nvml.calls["nvmlShutdown"] == 0
    monitor.snapshot()
    monitor.shutdown()
    assert nvml.calls["nvmlShutdown"] == 1
    assert monitor.snapshot().gpu_present and nvml.calls["nvmlInit"] == 2  # usable again after shutdown


def test_torch_memory_only_when_cuda_already_initialised(monkeypatch):
    def fake_torch(initialised: bool):
        cuda = SimpleNamespace(
            is_initialized=lambda: initialised,
            device_count=lambda: 2,
            memory_allocated=lambda i: (i + 1) * GIB,
            memory_reserved=lambda i: (i + 1) * 2 * GIB,
        )
        return SimpleNamespace(cuda=cuda)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert torch_memory() == (None, None)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(False))
    assert torch_memory() == (None, None)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(True))
    assert torch_memory() == (3 * GIB, 6 * GIB)
    snap = GpuMonitor(nvml=FakeNvml([gpu()])).snapshot()
    assert snap.torch_allocated_bytes == 3 * GIB and snap.torch_reserved_bytes == 6 * GIB


def test_system_ram_from_proc_meminfo():
    snap = GpuMonitor(nvml=FakeNvml([])).snapshot()
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo here")
    assert snap.system_ram_total_bytes > snap.system_ram_available_bytes > 0


# --- the fake monitor and the payload ------------------------------------------------------------------------


def test_fake_monitor_set_used_changes_warning_level():
    fake = FakeGpuMonitor([FakeGpu(name="Sim", total_bytes=10 * GIB, used_bytes=GIB, compute_capability=(7, 0)),
                           FakeGpu(total_bytes=20 * GIB)])
    snap = fake.snapshot()
    assert snap.gpu_present and snap.warning_level == "ok" and snap.gpus[0].supports_bf16 is False
    fake.set_used(0, int(8.5 * GIB))
    assert fake.snapshot().gpus[0].warning_level == "warning" and fake.snapshot().warning_level == "warning"
    fake.set_used(0, int(9.7 * GIB))
    assert fake.snapshot().warning_level == "critical"
    assert fake.devices()[0] == GpuDevice(0, "Sim", 10 * GIB, 10 * GIB - int(9.7 * GIB), (7, 0), False)
    assert_json_payload(fake.snapshot())


def test_fake_monitor_without_gpu():
    fake = FakeGpuMonitor.none()
    snap = fake.snapshot()
    assert not snap.gpu_present and snap.reason and fake.devices() == []
    assert FakeGpuMonitor.single(total_gib=8, used_gib=7.8).snapshot().warning_level == "critical"


def test_every_payload_key_is_documented():
    nvml = FakeNvml([gpu(procs=[(1, GIB)])])
    payload = GpuMonitor(nvml=nvml).snapshot().to_dict()
    keys = set(payload) | set(payload["gpus"][0]) | set(payload["gpus"][0]["processes"][0])
    undocumented = [key for key in keys if key not in Snapshot.__doc__]
    assert not undocumented


def test_process_memory_is_a_plain_value():
    assert ProcessMemory(1, None, None) == ProcessMemory(1, None, None)


# --- import hygiene -----------------------------------------------------------------------------------------


def test_importing_the_monitor_loads_neither_torch_nor_nvml():
    code = "import sys, i2v.gpu.monitor; assert 'torch' not in sys.modules; assert 'pynvml' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
