"""The web app's settings (i2v/settings.py): defaults, environment over default, flag over environment, a bad
value stops the start with a message naming the setting, and every setting is documented. Plus the model the
server picks when none is configured."""
from __future__ import annotations

from pathlib import Path

import pytest

from i2v.gpu.fake_monitor import FakeGpuMonitor
from i2v.settings import SETTINGS, AppSettings, load_settings
from i2v.web.server import choose_model

REPO = Path(__file__).resolve().parent.parent


OTHER_DEFAULTS = dict(allowed_hosts=(), min_free_mb=1024, retention_days=0.0, warn_percent=80, log_dir="",
                      keep_logs=20, log_max_mb=50, console_log=True, idle_stop_minutes=0.0, idle_command="", models=(),
                      step_cache=1, channels_last=False, compile=False, attention="sdpa",
                      shared_control=False, gpus=(), cpu_workers=0, watchdog_minutes=10.0,
                      executor="process", ray_address="")


def test_defaults():
    settings = load_settings([], environ={})
    assert settings == AppSettings(host="127.0.0.1", port=7860, model="", output_dir="", queue_size=8,
                                   max_upload_mb=50, poll_seconds=2.0, auth=None, **OTHER_DEFAULTS)
    assert settings.logs == REPO / "logs"  # the project's logs/, wherever the app was started from


def test_settings_are_named_consistently():
    assert {s.name: (s.env, s.flag) for s in SETTINGS}["max_upload_mb"] == ("I2V_MAX_UPLOAD_MB", "--max-upload-mb")
    for setting in SETTINGS:
        assert setting.env == "I2V_" + setting.name.upper()
        assert setting.flag == "--" + setting.name.replace("_", "-")


def test_environment_overrides_defaults():
    environ = {"I2V_HOST": "0.0.0.0", "I2V_PORT": "8123", "I2V_MODEL": "tiny", "I2V_OUTPUT_DIR": "/tmp/videos",
               "I2V_QUEUE_SIZE": "3", "I2V_MAX_UPLOAD_MB": "12", "I2V_POLL_SECONDS": "0.5"}
    settings = load_settings([], environ=environ)
    assert settings == AppSettings(host="0.0.0.0", port=8123, model="tiny", output_dir="/tmp/videos",
                                   queue_size=3, max_upload_mb=12, poll_seconds=0.5, auth=None, **OTHER_DEFAULTS)
    assert settings.outputs == Path("/tmp/videos")


def test_flags_override_the_environment():
    environ = {"I2V_PORT": "8123", "I2V_MODEL": "tiny", "I2V_QUEUE_SIZE": "3", "I2V_POLL_SECONDS": "0.5"}
    settings = load_settings(["--port", "9001", "--model", "ali-vilab/i2vgen-xl", "--queue-size=5"],
                             environ=environ)
    assert settings.port == 9001
    assert settings.model == "ali-vilab/i2vgen-xl"
    assert settings.queue_size == 5
    assert settings.poll_seconds == 0.5  # not given as a flag: the environment still counts
    assert settings.host == "127.0.0.1"  # in neither: the default


def test_an_empty_flag_value_overrides_the_environment():
    """``--model ""`` means "choose for me" even when I2V_MODEL is set."""
    assert load_settings(["--model", ""], environ={"I2V_MODEL": "tiny"}).model == ""


@pytest.mark.parametrize("value", ["0", "65536", "abc", "-1", "80.5"])
def test_a_bad_port_flag_stops_with_a_message_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit) as stop:
        load_settings(["--port", value], environ={})
    assert stop.value.code != 0
    error = capsys.readouterr().err
    assert "--port" in error
    assert value in error
    assert "Traceback" not in error


@pytest.mark.parametrize("value", ["0", "abc"])
def test_a_bad_port_in_the_environment_stops_with_a_message_naming_the_variable(value, capsys):
    with pytest.raises(SystemExit) as stop:
        load_settings([], environ={"I2V_PORT": value})
    assert stop.value.code != 0
    error = capsys.readouterr().err
    assert "I2V_PORT" in error
    assert value in error


def test_an_empty_environment_variable_counts_as_unset():
    assert load_settings([], environ={"I2V_PORT": "", "I2V_POLL_SECONDS": ""}).port == 7860


def test_a_good_flag_rescues_a_bad_environment_value():
    assert load_settings(["--port", "8080"], environ={"I2V_PORT": "abc"}).port == 8080


@pytest.mark.parametrize(("env", "value"), [("I2V_QUEUE_SIZE", "0"), ("I2V_MAX_UPLOAD_MB", "-5"),
                                            ("I2V_POLL_SECONDS", "0"), ("I2V_POLL_SECONDS", "nan"),
                                            ("I2V_POLL_SECONDS", "inf"), ("I2V_POLL_SECONDS", "0.01"),
                                            ("I2V_WARN_PERCENT", "0"), ("I2V_WARN_PERCENT", "100"),
                                            ("I2V_IDLE_STOP_MINUTES", "-1"), ("I2V_IDLE_STOP_MINUTES", "nan"),
                                            ("I2V_KEEP_LOGS", "0"), ("I2V_LOG_MAX_MB", "x"),
                                            ("I2V_CONSOLE_LOG", "maybe")])
def test_other_numbers_must_be_in_range(env, value, capsys):
    with pytest.raises(SystemExit):
        load_settings([], environ={env: value})
    assert env in capsys.readouterr().err


def test_operations_settings():
    settings = load_settings(["--idle-stop-minutes", "30", "--console-log", "off", "--log-dir", "none"],
                             environ={"I2V_WARN_PERCENT": "70", "I2V_IDLE_COMMAND": "sudo poweroff"})
    assert (settings.idle_stop_minutes, settings.console_log, settings.warn_percent) == (30.0, False, 70)
    assert settings.idle_command == "sudo poweroff"
    assert settings.logs is None  # 'none': no log files
    assert load_settings(["--log-dir", "/var/log/i2v"], environ={}).logs == Path("/var/log/i2v")


def test_every_setting_is_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [name for setting in SETTINGS for name in (setting.env, setting.flag) if name not in readme]
    assert not missing, f"document these app settings in the README: {missing}"


# -- the model when none is configured -------------------------------------------------------------------------


def test_a_configured_model_wins():
    assert choose_model("tiny", FakeGpuMonitor.single()) == "tiny"
    assert choose_model("/models/my-i2vgen", FakeGpuMonitor.none()) == "/models/my-i2vgen"


def test_without_a_gpu_the_tiny_model_is_chosen():
    assert choose_model("", FakeGpuMonitor.none()) == "tiny"


def test_with_a_gpu_the_real_model_is_chosen():
    assert choose_model("", FakeGpuMonitor.single()) == "ali-vilab/i2vgen-xl"


def test_model_list_and_speedup_settings_parse_and_refuse_bad_values(capsys):
    settings = load_settings(["--models", " tiny-cogvideox, /data/my-model ,tiny-cogvideox", "--step-cache", "3",
                              "--attention", "Classic"], environ={"I2V_CHANNELS_LAST": "on", "I2V_COMPILE": "1"})
    assert settings.models == ("tiny-cogvideox", "/data/my-model")
    speedups = settings.speedups()
    assert (speedups.step_cache_interval, speedups.attention, speedups.channels_last, speedups.compile) == (
        3, "classic", True, True)
    for flag, value in (("--step-cache", "0"), ("--step-cache", "11"), ("--attention", "flash3")):
        with pytest.raises(SystemExit):
            load_settings([flag, value], environ={})
        assert flag in capsys.readouterr().err


def test_workers_are_chosen_by_gpu_numbers_and_a_bad_list_is_refused_by_name(capsys):
    settings = load_settings(["--gpus", "0,2,3", "--cpu-workers", "2", "--watchdog-minutes", "0.5"], environ={})
    assert (settings.gpus, settings.cpu_workers, settings.watchdog_minutes) == ((0, 2, 3), 2, 0.5)
    assert load_settings([], environ={"I2V_GPUS": " 1 , 1,"}).gpus == (1,)
    assert load_settings(["--gpus", "none"], environ={}).gpus is None
    with pytest.raises(SystemExit):
        load_settings(["--gpus", "first"], environ={})
    assert "--gpus: must be GPU numbers like 0,2,3" in capsys.readouterr().err


def test_the_ray_executor_and_its_address_are_read_and_a_wrong_one_is_refused_by_name(capsys):
    settings = load_settings(["--executor", "Ray"], environ={"I2V_RAY_ADDRESS": "ray://head.lan:10001"})
    assert (settings.executor, settings.ray_address) == ("ray", "ray://head.lan:10001")
    assert load_settings([], environ={"I2V_RAY_ADDRESS": "auto"}).ray_address == "auto"
    assert load_settings(["--ray-address", "10.0.0.5:6379"], environ={}).ray_address == "10.0.0.5:6379"
    with pytest.raises(SystemExit):
        load_settings(["--executor", "slurm"], environ={})
    assert "--executor: expected one of process, ray, got 'slurm'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_settings([], environ={"I2V_RAY_ADDRESS": "headnode"})
    assert "I2V_RAY_ADDRESS: expected empty" in capsys.readouterr().err
