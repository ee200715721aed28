"""Refuse requests whose ``Host`` names a site the app is not: DNS rebinding.

A hostile page can make its own name resolve to 127.0.0.1 once it is loaded; the browser then sends the visitor's
requests to this app as same-origin requests for that name (``Host: evil.example``) and lets the page read the
answers. The default app has no password and listens on loopback, often behind an SSH tunnel, so that would hand
the page everything. Bound to loopback, the app answers only to loopback names (``localhost``, ``*.localhost``,
127.x.y.z, ``[::1]``) and to the names in ``--allowed-hosts``; a rebound name never resolves to one of those.
Bound to the network, the names it is reached by are the operator's to list (``--allowed-hosts``); without a
list any name is served there, as before (README "Access control").
"""
from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)

ANY = "*"
_BODY = (b"This app does not answer to the host name in your request. It answers to localhost, 127.0.0.1 and [::1], "
         b"and to the names listed in I2V_ALLOWED_HOSTS (--allowed-hosts): if you reach it by another name on "
         b"purpose, add that name there.\n")


def allowed_host_names(bind_host: str, extra: tuple[str, ...]) -> frozenset[str] | None:
    """The names (lower case, no port) to answer besides the loopback ones, or None to answer any."""
    if ANY in extra or (not _is_loopback(bind_host) and not extra):
        return None
    return frozenset({bind_host.lower(), *(name.lower() for name in extra)})


def host_is_allowed(header: bytes, names: frozenset[str] | None) -> bool:
    if names is None:
        return True
    host = _host_name(header.decode("latin-1"))
    return host in names or _is_loopback(host) or host.endswith(".localhost")


class HostCheckMiddleware:
    def __init__(self, app, *, names: frozenset[str] | None):
        self.app = app
        self.names = names

    async def __call__(self, scope, receive, send) -> None:
        header = _host_header(scope) if scope["type"] in ("http", "websocket") else None
        if header is None or host_is_allowed(header, self.names):
            await self.app(scope, receive, send)
            return
        # %r: the header is the client's text; it must not forge log lines
        log.warning("refused %s %r for host %r (not in --allowed-hosts)", scope["type"], scope["path"][:200],
                    header[:200].decode("latin-1"))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_BODY)).encode("ascii")),
            (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": _BODY})


def _host_header(scope) -> bytes | None:
    """The Host header; None when there is none (HTTP/1.0: no name to rebind)."""
    return next((value for name, value in scope.get("headers", ()) if name == b"host"), None)


def _host_name(host: str) -> str:
    """``Name:port``, ``[v6]:port`` → the name, lower case, without a final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
