"""Access control (I2V_AUTH / --auth): the setting's forms and errors, and HTTP Basic auth in front of every route of
the real app except /healthz, including Gradio's page, config and API, which a script reaches with the header."""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from i2v.settings import Credentials, load_settings
from i2v.engine.video import probe_mp4
from i2v.web.auth import FREE_FAILURES, BasicAuthMiddleware, FailureThrottle, basic_auth_header
from i2v.web.server import ServerThread, create_app

from conftest import photo_like
from web_support import free_port, running_app

USER, PASSWORD = "studio", "s3cret:with-colon"
PROTECTED = ["/", "/gpu_status", "/metrics", "/config", "/gradio_api/info"]


# -- the setting -------------------------------------------------------------------------------------------------


def test_auth_is_off_by_default_and_when_empty():
    assert load_settings([], environ={}).auth is None
    assert load_settings([], environ={"I2V_AUTH": ""}).auth is None
    assert load_settings(["--auth", ""], environ={"I2V_AUTH": "a:b"}).auth is None  # an empty flag switches it off


def test_auth_from_the_environment_splits_at_the_first_colon():
    assert load_settings([], environ={"I2V_AUTH": "alice:pa:ss"}).auth == Credentials("alice", "pa:ss")


def test_auth_from_a_file_reads_its_first_line(tmp_path):
    secret = tmp_path / "auth.txt"
    secret.write_text("bob:hunter2\nignored:line\n", encoding="utf-8")
    assert load_settings(["--auth", f"@{secret}"], environ={}).auth == Credentials("bob", "hunter2")


def test_the_password_never_shows_in_the_settings_repr():
    settings = load_settings([], environ={"I2V_AUTH": "alice:topsecret"})
    assert "topsecret" not in repr(settings)
    assert "alice" in repr(settings)


@pytest.mark.parametrize("value", ["no-colon", ":only-password", "only-user:", "@/nonexistent/auth.txt"])
def test_bad_auth_stops_with_a_message_naming_the_setting(value, capsys):
    with pytest.raises(SystemExit) as stop:
        load_settings([], environ={"I2V_AUTH": value})
    assert stop.value.code != 0
    error = capsys.readouterr().err
    assert "I2V_AUTH" in error
    assert "Traceback" not in error
    if not value.startswith("@"):
        secret = value.partition(":")[2]
        assert not secret or secret not in error  # the password is not echoed


def test_an_empty_credentials_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(SystemExit):
        load_settings(["--auth", f"@{empty}"], environ={})
    assert "--auth" in capsys.readouterr().err


# -- the middleware on its own -------------------------------------------------------------------------------------


def test_a_websocket_without_credentials_is_closed_with_policy_violation():
    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("the app was reached without credentials")

    sent = []

    async def send(message):
        sent.append(message)

    middleware = BasicAuthMiddleware(app, credentials=Credentials(USER, PASSWORD))
    asyncio.run(middleware({"type": "websocket", "path": "/ws", "headers": []}, None, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]


# -- the real app ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with auth from a credentials file, as an operator would keep it out of the environment."""
    folder = tmp_path_factory.mktemp("auth")
    secret = folder / "auth.txt"
    secret.write_text(f"{USER}:{PASSWORD}\n", encoding="utf-8")
    port = free_port()
    settings = load_settings(["--port", str(port), "--model", "tiny", "--output-dir", str(folder / "outputs"),
                              "--auth", f"@{secret}"], environ={})
    running = ServerThread(create_app(settings), port=port).start()
    yield running
    running.stop()


def get(server, path: str, **kwargs) -> httpx.Response:
    return httpx.get(server.url.rstrip("/") + path, timeout=30, **kwargs)


@pytest.mark.parametrize("path", PROTECTED)
def test_anonymous_requests_are_refused_with_a_basic_challenge(server, path):
    response = get(server, path)
    assert response.status_code == 401, response.text[:200]
    assert response.headers["www-authenticate"].startswith('Basic realm="I2V Studio"')
    assert "gradio" not in response.text.lower()  # nothing of the page or the API description leaks


@pytest.mark.parametrize("path", PROTECTED)
def test_the_right_credentials_open_every_route(server, path):
    assert get(server, path, auth=(USER, PASSWORD)).status_code == 200


@pytest.mark.parametrize("auth", [(USER, "wrong"), ("someone", PASSWORD), (USER, PASSWORD + "x")])
def test_wrong_credentials_are_refused(server, auth):
    assert get(server, "/gpu_status", auth=auth).status_code == 401


def test_a_malformed_authorization_header_is_refused(server):
    for header in ("Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert get(server, "/", headers={"Authorization": header}).status_code == 401


def test_healthz_stays_open_for_load_balancers(server):
    response = get(server, "/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_gradio_client_with_the_basic_auth_header_generates_a_video(server, tmp_path):
    image = tmp_path / "input.png"
    photo_like(320, 256).save(image)
    client = Client(server.url, headers=basic_auth_header(USER, PASSWORD), verbose=False)
    try:
        video, files, result = client.predict(handle_file(str(image)), "a red ball rolling slowly to the left",
                                              preset="fast-check", resolution=128, frames=4, steps=2,
                                              api_name="/generate")
    finally:
        client.close()
    assert Path(video).suffix == ".mp4"
    assert probe_mp4(Path(video))["frames"] == 4
    assert len(result["videos"]) == 1


def test_gradio_client_without_credentials_cannot_connect(server):
    with pytest.raises(Exception):  # noqa: B017 - gradio_client wraps the 401 in varying exception types
        Client(server.url, verbose=False)


# -- log lines and guessing (red-team items 7 and 8) ---------------------------------------------------------------


def test_a_refused_path_cannot_forge_a_log_line(server, caplog):
    forged = "2026-12-04 12:00:00,000 WARNING [job 1a2b3c4d] i2v.service.jobs: queued (0 ahead)"
    target = "/gpu_status%0A" + forged.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D")
    with caplog.at_level(logging.DEBUG, logger="i2v.web.auth"), httpx.Client(timeout=30) as client:
        request = client.build_request("GET", server.url, extensions={"target": target.encode("ascii")},
                                       headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode()})
        assert client.send(request).status_code == 401
    lines = [record.getMessage() for record in caplog.records if record.name == "i2v.web.auth"]
    assert lines, "the refusal was not logged"
    assert all("\n" not in line and "\r" not in line for line in lines), lines
    assert any("\\n" + forged in line for line in lines), lines  # still there, visibly escaped


def test_wrong_passwords_are_throttled_per_client(tmp_path):
    """Before: 50 wrong passwords were answered in 0.06 s. After FREE_FAILURES the client waits, and while it
    waits no password is even checked (the right one included), so guessing gains nothing."""
    with running_app(tmp_path / "outputs", extra_args=["--auth", f"{USER}:{PASSWORD}"]) as app, \
            httpx.Client(base_url=app.url, timeout=30) as http:
        answers = [http.get("/gpu_status", auth=(USER, f"guess{n}")) for n in range(FREE_FAILURES + 1)]
        right_too_soon = http.get("/gpu_status", auth=(USER, PASSWORD))  # within a second of the 10th failure
        answers += [http.get("/gpu_status", auth=(USER, f"guess{n}")) for n in range(50 - len(answers))]
        anonymous = http.get("/gpu_status")
        for _ in range(10):  # wait as told until the right password is checked again
            right_later = http.get("/gpu_status", auth=(USER, PASSWORD))
            if right_later.status_code != 429:
                break
            time.sleep(float(right_later.headers["retry-after"]))
        wrong_after_success = http.get("/gpu_status", auth=(USER, "guess"))

    codes = [answer.status_code for answer in answers]
    assert codes[:FREE_FAILURES + 1] == [401] * FREE_FAILURES + [429], codes
    # Checked again only after each wait (1, 2, 4 … s): in 50 quick tries, at most a few more.
    assert codes.count(401) <= FREE_FAILURES + 3 and codes.count(429) >= 50 - FREE_FAILURES - 3, codes
    waited = [answer for answer in answers if answer.status_code == 429]
    assert all(1 <= int(a.headers["retry-after"]) <= 60 and "wait" in a.text.lower() for a in waited)
    assert right_too_soon.status_code == 429
    assert anonymous.status_code == 401  # a visitor without a password still gets the login prompt
    assert right_later.status_code == 200
    assert wrong_after_success.status_code == 401  # a success starts the count again


def test_the_wait_doubles_per_failure_up_to_a_minute_and_is_per_client():
    now = {"t": 1000.0}
    throttle = FailureThrottle(clock=lambda: now["t"])
    for _ in range(FREE_FAILURES):
        assert throttle.wait_seconds("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
    waits = []
    for _ in range(8):
        waits.append(throttle.wait_seconds("10.0.0.1"))
        now["t"] += waits[-1]
        throttle.failed("10.0.0.1")
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    assert throttle.wait_seconds("10.0.0.2") == 0  # another client is not slowed down
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_seconds("10.0.0.1") == 0
