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
import secrets

from i2v.settings import Credentials

log = logging.getLogger(__name__)

REALM = "I2V Studio"
# Load balancers probe this without credentials; it reveals only the model name, uptime and queue length.
OPEN_PATHS = frozenset({"/healthz"})
_BODY = b"Authentication required: log in with the user and password set in I2V_AUTH.\n"


class BasicAuthMiddleware:
    def __init__(self, app, *, credentials: Credentials, open_paths: frozenset[str] = OPEN_PATHS):
        self.app = app
        self._user = credentials.user.encode("utf-8")
        self._password = credentials.password.encode("utf-8")
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths \
                or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        # Every browser's first request comes without credentials: only wrong ones are worth a warning.
        wrong = any(name == b"authorization" for name, _ in scope.get("headers", ()))
        log.log(logging.WARNING if wrong else logging.DEBUG, "refused %s %s from %s: %s credentials", scope["type"],
                scope["path"], (scope.get("client") or ("?",))[0], "wrong" if wrong else "no")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
            return
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode("ascii")),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_BODY)).encode("ascii")),
            (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": _BODY})

    def _authorized(self, scope) -> bool:
        header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), b"")
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


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """The header a script sends (e.g. ``gradio_client.Client(url, headers=basic_auth_header(...))``)."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return {"Authorization": f"Basic {token}"}
