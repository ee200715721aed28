"""The app's settings, declared once: each has a default, an ``I2V_*`` environment variable and a flag of
``app.py``. The README's configuration table must list every one (tests/test_docs.py checks).

Precedence: command-line flag > environment variable > default.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from i2v.paths import logs_dir, outputs_dir

EXECUTORS = ("process", "ray")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return f"I2V_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive whole number, got {text!r}")
    return value


def _poll_seconds(text: str) -> float:
    value = float(text)
    if not 0.5 <= value <= 60:  # faster floods the server from every tab; slower is no longer "live"
        raise ValueError(f"must be between 0.5 and 60 seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a TCP port 1..65535, got {text!r}")
    return value


def _whole_number(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, got {text!r}")
    return value


def _days(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100 * 365:  # NaN fails this too
        raise ValueError(f"must be days, 0 (keep everything) or more, got {text!r}")
    return value


def _percent(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 99:
        raise ValueError(f"must be a percentage 1..99, got {text!r}")
    return value


def _minutes(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 7 * 24 * 60:  # NaN fails this too
        raise ValueError(f"must be minutes between 0 (off) and 10080 (a week), got {text!r}")
    return value


def _model_list(text: str) -> tuple[str, ...]:
    """Comma-separated hub ids, folders or built-in names (checked against the backends at start)."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def _host_names(text: str) -> tuple[str, ...]:
    """Comma-separated host names (no ports), compared without case and final dot; ``*``: any."""
    names = (part.strip().lower().rstrip(".") for part in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def _step_cache(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10:
        raise ValueError(f"must be 1 (off) to 10, got {text!r}")
    return value


def _attention(text: str) -> str:
    value = text.strip().lower()
    if value not in ("sdpa", "classic"):
        raise ValueError(f"must be sdpa or classic, got {text!r}")
    return value


def _gpu_list(text: str) -> tuple[int, ...] | None:
    """Comma-separated GPU numbers as nvidia-smi numbers them; empty: every GPU; ``none``: no GPU worker."""
    if text.strip().lower() == "none":
        return None
    try:
        numbers = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise ValueError(f"must be GPU numbers like 0,2,3 (empty: every GPU; none: no GPU worker), got {text!r}"
                         ) from None
    if any(number < 0 for number in numbers):
        raise ValueError(f"GPU numbers start at 0, got {text!r}")
    return numbers


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _executor(text: str) -> str:
    value = text.strip().lower()
    if value not in EXECUTORS:
        raise ValueError(f"expected one of {', '.join(EXECUTORS)}, got {text!r}")
    return value


def _ray_address(text: str) -> str:
    value = text.strip()
    if value and value != "auto" and not value.startswith("ray://") and ":" not in value:
        raise ValueError(f"expected empty (a local Ray instance), auto, host:6379 or ray://host:10001, got {text!r}")
    return value


def _switch(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"must be on or off (also 1/0, true/false, yes/no), got {text!r}")


@dataclass(frozen=True)
class Credentials:
    """The one user name and password the app accepts (HTTP Basic auth)."""

    user: str
    password: str = field(repr=False)  # settings get logged; the password must not


def _auth(text: str) -> Credentials | None:
    """``user:password`` or ``@/path/to/file`` whose first line is that; empty: no auth. Messages never echo
    the password."""
    if not text:
        return None
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the credentials file {str(path)!r} ({exc.__class__.__name__}: "
                             f"{getattr(exc, 'strerror', None) or exc})") from None
        text, where = (lines[0].strip() if lines else ""), f" in the first line of {str(path)!r}"
    else:
        where = ""
    user, colon, password = text.partition(":")  # the password may contain colons; the user may not (RFC 7617)
    if not colon:
        raise ValueError(f"expected user:password{where} (or @FILE), but there is no ':'")
    if not user or not password:
        raise ValueError(f"both the user and the password must be non-empty{where}")
    return Credentials(user, password)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "address to listen on (0.0.0.0 exposes the app to the network)"),
    Setting("port", 7860, "TCP port of the web UI", _port),
    Setting("allowed_hosts", (), "host names the app answers to besides localhost, 127.0.0.1 and [::1] "
            "(comma-separated; '*': any); bound to the network without a list, any name is served", _host_names),
    Setting("model", "", "hub id, local folder or 'tiny'; empty: ali-vilab/i2vgen-xl with a CUDA GPU, tiny without"),
    Setting("models", (), "more models the page offers, comma-separated hub ids or folders (the configured model, "
            "known models in the Hugging Face cache and, beside a test model, the other test models are always "
            "offered)", _model_list),
    Setting("output_dir", "", "where videos, sidecars, posters, kept inputs and the job database go "
            "(empty: outputs/ in the project)"),
    Setting("queue_size", 8, "jobs that may wait behind the running one; more are refused with a 'busy' message",
            _positive_int),
    Setting("max_upload_mb", 50, "largest upload accepted, in megabytes", _positive_int),
    Setting("min_free_mb", 1024, "a job is refused when it would leave less free disk space than this (MB) in the "
            "output folder", _whole_number),
    Setting("retention_days", 0.0, "delete outputs (jobs, videos, records, kept inputs) older than this many days, "
            "at start and hourly, logging each (0: keep everything)", _days),
    Setting("poll_seconds", 2.0, "how often the page polls /gpu_status (0.5..60 s)", _poll_seconds),
    Setting("warn_percent", 80, "GPU memory use (percent) at which the page warns", _percent),
    Setting("auth", None, "user:password or @FILE (first line user:password) for HTTP Basic auth on every route "
            "but /healthz; empty: no auth", _auth),
    Setting("shared_control", False, "every visitor may cancel and promote every job (on/off); off: only the browser "
            "or API caller that submitted a job steers it, others see it", _switch),
    Setting("log_dir", "", "folder of the log files app_YYYYmmdd_HHMMSS.log and latest.log (empty: logs/ in the "
            "project; 'none': no log file)"),
    Setting("keep_logs", 20, "log files of this many runs are kept; older ones are deleted at start", _positive_int),
    Setting("log_max_mb", 50, "a log file rotates at this size (5 older parts .1 … .5 are kept)", _positive_int),
    Setting("console_log", True, "also write log lines to the terminal (start_app.sh turns this off in the "
            "background, where the log file has them)", _switch),
    Setting("idle_stop_minutes", 0.0, "stop the app after this many minutes without a job (0: never)", _minutes),
    Setting("idle_command", "", "command run after an idle stop, e.g. 'sudo poweroff' to stop paying for the "
            "machine (split like a shell would, run without a shell)"),
    Setting("step_cache", 1, "DeepCache-style step caching for I2VGen-XL: run the UNet's deep blocks on every Nth "
            "step only (1: off; 2-3 trade a little detail for speed, see docs/BENCHMARKS.md)", _step_cache),
    Setting("channels_last", False, "channels-last memory layout for the UNet (on/off)", _switch),
    Setting("compile", False, "torch.compile the denoiser's blocks (first job pays the compile time; kernels are "
            "cached in the cache folder across restarts)", _switch),
    Setting("gpus", (), "GPUs that get a worker process each, as nvidia-smi numbers them (e.g. 0,2,3; empty: every "
            "GPU; 'none': jobs run one at a time in the app's own process, as on a box without a GPU)", _gpu_list),
    Setting("cpu_workers", 0, "run this many worker processes on the CPU instead of one per GPU (tests, CPU "
            "boxes); 0: a worker per GPU, or on a box without a GPU one job at a time inside the app's process",
            _whole_number),
    Setting("watchdog_minutes", 10.0, "a worker process that reports no denoising step for this many minutes is "
            "ended and restarted, its job re-queued once (0: never; model loading is not timed)", _minutes),
    Setting("executor", "process", "where jobs run: process (worker processes on this box, see --gpus) or ray "
            "(Ray actors, one per GPU of a Ray cluster; needs ./start_app.sh setup --cluster)", _executor),
    Setting("ray_address", "", "with --executor ray: empty starts a Ray instance in the app, auto joins the one "
            "`ray start --head` runs on this box, ray://host:10001 joins a cluster through Ray Client", _ray_address),
    Setting("attention", "sdpa", "attention kernel: sdpa (PyTorch scaled-dot-product: flash/memory-efficient on "
            "GPUs) or classic (explicit matmul-softmax, for comparison)", _attention),
)


@dataclass(frozen=True)
class AppSettings:
    host: str
    port: int
    allowed_hosts: tuple[str, ...]
    model: str
    models: tuple[str, ...]
    output_dir: str
    queue_size: int
    max_upload_mb: int
    min_free_mb: int
    retention_days: float
    poll_seconds: float
    warn_percent: int
    auth: Credentials | None
    shared_control: bool
    log_dir: str
    keep_logs: int
    log_max_mb: int
    console_log: bool
    idle_stop_minutes: float
    idle_command: str
    step_cache: int
    channels_last: bool
    compile: bool
    gpus: tuple[int, ...] | None
    cpu_workers: int
    watchdog_minutes: float
    executor: str
    ray_address: str
    attention: str

    def speedups(self):
        from i2v.speedups import Speedups

        return Speedups(step_cache_interval=self.step_cache, channels_last=self.channels_last, compile=self.compile,
                        attention=self.attention)

    @property
    def outputs(self) -> Path:
        return Path(self.output_dir) if self.output_dir else outputs_dir()

    @property
    def logs(self) -> Path | None:
        """The log folder, or None when log files are off."""
        if self.log_dir.strip().lower() == "none":
            return None
        return Path(self.log_dir).expanduser() if self.log_dir else logs_dir()


assert [s.name for s in SETTINGS] == [f.name for f in fields(AppSettings)], "settings and AppSettings disagree"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        parser.add_argument(setting.flag, dest=setting.name, default=None,
                            help=f"{setting.help} (env {setting.env}, default {setting.default!r})")


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AppSettings:
    """Flags > environment > defaults. An unparsable value exits with a message naming the setting."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="app.py", description="I2V Studio web UI")
    add_arguments(parser)
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw, source = getattr(args, setting.name), setting.flag
        if raw is None:
            raw, source = environ.get(setting.env) or None, setting.env  # set but empty = not set
        if raw is None:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            parser.error(f"{source}: {exc}")
    return AppSettings(**values)
