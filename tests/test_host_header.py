"""DNS rebinding: a hostile page whose name is made to resolve to 127.0.0.1 would send the visitor's requests to
the app with ``Host: evil.example`` and read the answers as same-origin. Bound to loopback, the real app answers
only to loopback names and those listed in ``--allowed-hosts``; a foreign name is refused and never echoed."""
from __future__ import annotations

import httpx
import pytest

from i2v.settings import load_settings
from i2v.web.hosts import allowed_host_names, host_is_allowed

from web_support import running_app

EVIL = "evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("hosts"), extra_args=["--allowed-hosts", "studio.lan"]) as running:
        yield running


def get(server, path: str, host: str) -> httpx.Response:
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    return httpx.get(server.url.rstrip("/") + path, headers={"Host": f"{host}:{port}"}, timeout=30)


@pytest.mark.parametrize("path", ["/", "/config", "/gradio_api/info", "/gpu_status", "/metrics", "/healthz"])
def test_a_foreign_host_name_is_refused_and_not_echoed(server, path):
    response = get(server, path, EVIL)
    assert response.status_code == 400, response.text[:200]
    assert EVIL not in response.text
    assert "I2V_ALLOWED_HOSTS" in response.text  # says what to do when the name is legitimate


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST", "studio.lan"])
def test_loopback_names_and_the_allowed_ones_are_served(server, host):
    response = get(server, "/config", host)
    assert response.status_code == 200
    assert EVIL not in response.text


def test_the_setting_takes_a_comma_separated_list():
    assert load_settings([], environ={}).allowed_hosts == ()
    settings = load_settings(["--allowed-hosts", " Studio.lan, box.example. ,"], environ={})
    assert settings.allowed_hosts == ("studio.lan", "box.example")


def test_which_names_are_allowed_where():
    on_loopback = allowed_host_names("127.0.0.1", ())
    assert host_is_allowed(b"localhost:7860", on_loopback) and host_is_allowed(b"127.0.0.2", on_loopback)
    assert host_is_allowed(b"[::1]:7860", on_loopback) and host_is_allowed(b"app.localhost", on_loopback)
    assert not host_is_allowed(b"evil.example:7860", on_loopback)
    assert not host_is_allowed(b"localhost.evil.example", on_loopback)
    # Bound to the network without a list: names are the operator's business (README); with a list, enforced.
    assert allowed_host_names("0.0.0.0", ()) is None
    listed = allowed_host_names("0.0.0.0", ("gpu.lan",))
    assert host_is_allowed(b"gpu.lan:7860", listed) and not host_is_allowed(b"evil.example", listed)
    assert allowed_host_names("127.0.0.1", ("*",)) is None
