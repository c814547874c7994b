"""Who may change faults: decided by the caller, never by the address the service is bound to.

Without ``FAKESVC_ADMIN_TOKEN``, only a loopback caller with no proxy in
between may change anything: a same-host proxy or an SSH tunnel also arrives
from loopback, and says so with ``Forwarded``, ``X-Forwarded-For`` or
``Via``. With a token, the token is required from everyone. The services'
``/chaos`` routes and the sink's ``/sink/faults`` routes share this check.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "Via")


def is_loopback(remote: str | None) -> bool:
    """Whether ``remote`` (``request.remote``) is a loopback address, IPv4-mapped ones included."""
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _offered_token(request: web.Request) -> bytes | None:
    """The token the caller sent (``Authorization: Bearer``, any case, or ``X-Admin-Token``), as raw bytes.

    aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape``;
    encoding them back the same way gives the bytes as sent, so an
    undecodable header is just a wrong token, never an exception.
    """
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        offered = credentials.strip()
    else:
        offered = request.headers.get("X-Admin-Token", "")
    return offered.encode("utf-8", "surrogateescape")


def check_caller(request: web.Request, admin_token: str | None) -> None:
    """Raise 401 or 403 (with the reason) unless the caller may change faults."""
    if admin_token is not None:
        offered = _offered_token(request)
        if offered is None or not hmac.compare_digest(offered, admin_token.encode()):
            raise web.HTTPUnauthorized(text="fault control needs the admin token: Authorization: Bearer <token>")
        return
    if not is_loopback(request.remote):
        raise web.HTTPForbidden(
            text=f"fault control refused: remote {request.remote} is not loopback "
            "(set FAKESVC_ADMIN_TOKEN to allow changes from other hosts)"
        )
    for header in PROXY_HEADERS:
        if header in request.headers:
            raise web.HTTPForbidden(
                text=f"fault control refused: proxy header {header} present, the caller may not be local "
                "(set FAKESVC_ADMIN_TOKEN to allow changes through a proxy)"
            )
