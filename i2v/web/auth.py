"""HTTP Basic auth in front of the whole app.

A plain ASGI middleware on the FastAPI app rather than Gradio's ``launch(auth=...)``: Gradio's login form still
answers ``/`` to anonymous visitors (with the API description embedded) and does not cover our own routes. Here
every request but the open paths needs the credentials: page, Gradio's API and files, ``/gpu_status``,
``/metrics``. Browsers show their own login prompt and then send the header with every same-origin request.
"""
from __future__ import annotations

import base64
import binascii
import logging
import math
import secrets
import time
from collections import OrderedDict

from i2v.settings import Credentials

log = logging.getLogger(__name__)

REALM = "I2V Studio"
# Load balancers probe this without credentials; it reveals only the model name, uptime and queue length.
OPEN_PATHS = frozenset({"/healthz"})
_BODY = b"Authentication required: log in with the user and password set in I2V_AUTH.\n"
FREE_FAILURES = 10  # wrong passwords in a row a client may send before it has to wait
MAX_WAIT_SECONDS = 60


class FailureThrottle:
    """Wrong credentials per client address. From the ``FREE_FAILURES``-th in a row, the n-th failure makes the
    client wait 2**(n - FREE_FAILURES) s (1, 2, 4 … at most a minute) before its next credentials are even checked;
    a success clears its count. Behind a reverse proxy every client shares the proxy's address (README)."""

    def __init__(self, clock=time.monotonic, max_clients: int = 4096):
        self._clock = clock
        self._max_clients = max_clients  # a flood of addresses must not grow memory without bound
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (failures, free again at)

    def wait_seconds(self, client: str) -> float:
        _failures, free_at = self._clients.get(client, (0, 0.0))
        return max(0.0, free_at - self._clock())

    def failed(self, client: str) -> None:
        failures = self._clients.pop(client, (0, 0.0))[0] + 1
        wait = 0 if failures < FREE_FAILURES else min(MAX_WAIT_SECONDS, 2 ** (failures - FREE_FAILURES))
        self._clients[client] = (failures, self._clock() + wait)
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


class BasicAuthMiddleware:
    def __init__(self, app, *, credentials: Credentials, open_paths: frozenset[str] = OPEN_PATHS,
                 throttle: FailureThrottle | None = None):
        self.app = app
        self._user = credentials.user.encode("utf-8")
        self._password = credentials.password.encode("utf-8")
        self.open_paths = open_paths
        self.throttle = throttle or FailureThrottle()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), None)
        client = (scope.get("client") or ("?",))[0]
        wait = self.throttle.wait_seconds(client) if header is not None else 0.0
        if wait > 0:  # not even checked: a guess sent now tells nothing
            await _refuse(scope, send, 429, _wait_headers(wait), _wait_body(wait))
            return
        if header is not None and self._authorized(header):
            self.throttle.succeeded(client)
            await self.app(scope, receive, send)
            return
        if header is not None:
            self.throttle.failed(client)
        # Every browser's first request comes without credentials: only wrong ones are worth a warning. %r: the
        # path is percent-decoded client text, and a newline in it must not forge a log line.
        log.log(logging.WARNING if header is not None else logging.DEBUG, "refused %s %r from %s: %s credentials",
                scope["type"], scope["path"][:200], client, "wrong" if header is not None else "no")
        challenge = [(b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode("ascii"))]
        await _refuse(scope, send, 401, challenge, _BODY)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Both compared every time, in constant time, so timing tells nothing about which part was wrong.
        user_ok = secrets.compare_digest(user, self._user)
        password_ok = secrets.compare_digest(password, self._password)
        return bool(colon) and user_ok and password_ok


async def _refuse(scope, send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
        return
    await send({"type": "http.response.start", "status": status, "headers": [
        *headers,
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
    ]})
    await send({"type": "http.response.body", "body": body})


def _wait_headers(wait: float) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(math.ceil(wait)).encode("ascii"))]


def _wait_body(wait: float) -> bytes:
    return (f"Too many wrong passwords from your address: wait {math.ceil(wait)} s, then log in with the user and "
            "password set in I2V_AUTH.\n").encode("utf-8")


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """The header a script sends (e.g. ``gradio_client.Client(url, headers=basic_auth_header(...))``)."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return {"Authorization": f"Basic {token}"}
