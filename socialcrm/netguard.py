"""Which URLs the server may fetch on someone else's behalf (SSRF guard).

Outbound webhooks (a URL an integrator typed) and the console's avatar proxy (a URL a platform sent) make the
server fetch addresses that outsiders chose. Only plain http(s) URLs without credentials whose host resolves to
public addresses only are allowed; private, loopback, link-local, multicast and reserved addresses (the
database, the cloud's metadata service, the office network) are refused unless a development setting allows
them. The check resolves the host itself, so a name pointing at 127.0.0.1 is refused like the literal address.

`public_url_check` refuses a bad URL early, with a clear reason. The fetch itself goes through `guarded_client`,
whose connections resolve and check the host again at connect time and then connect to exactly the address
they checked: a host that answers with a public address for the first lookup and a private one for the next
(DNS rebinding) gets no connection, and neither does a redirect to such a host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx


class UrlRefused(ValueError):
    """A URL the server must not fetch; `code` names why."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.code = code


def refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `ip` is anything but a public unicast address (an IPv4-mapped IPv6 address counts as its IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def any_refused(addresses: Iterable[str]) -> bool:
    """Whether any of these resolved addresses (an IPv6 one perhaps with a `%zone`) is one the guard refuses."""
    return any(refused_address(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses)


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def public_url_check(url: str, *, allow_private: bool = False) -> list[str]:
    """The addresses `url`'s host resolves to; `UrlRefused` for anything the server must not fetch."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("Not a valid URL.", "url_invalid") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("Only http and https URLs are allowed.", "url_invalid")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("A URL must not carry credentials.", "url_invalid")
    host = parts.hostname
    if not host:
        raise UrlRefused("The URL has no host.", "url_invalid")
    return checked_addresses(host, port, allow_private=allow_private)


def checked_addresses(host: str, port: int, *, allow_private: bool = False) -> list[str]:
    """The addresses `host` resolves to; `UrlRefused` when it cannot be resolved or any of them is refused."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise UrlRefused(f"The host {host!r} cannot be resolved.", "url_unresolvable") from None
    if not addresses:
        raise UrlRefused(f"The host {host!r} cannot be resolved.", "url_unresolvable")
    if not allow_private and any_refused(addresses):
        raise UrlRefused(f"The host {host!r} resolves to a private, loopback, link-local or reserved address.",
                         "url_refused")
    return addresses


class _CheckedBackend(httpcore.SyncBackend):
    """TCP connections only to addresses the guard accepts, resolved and checked at connect time."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(host, port, allow_private=self.allow_private)
        except UrlRefused as exc:
            raise httpcore.ConnectError(f"refused: {exc}") from None
        for address in addresses[:-1]:  # the next one on failure; the last one's failure is the answer
            with contextlib.suppress(httpcore.ConnectError):
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
        return super().connect_tcp(addresses[-1], port, timeout, local_address, socket_options)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, allow_private: bool) -> None:
        super().__init__(trust_env=False)
        # httpx builds its pool without a way to pass a network backend; this one is built alike, with ours.
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                             network_backend=_CheckedBackend(allow_private=allow_private))


def guarded_client(*, allow_private: bool = False, **options: Any) -> httpx.Client:
    """An httpx client whose every connection (redirects included) goes only to addresses the guard accepts.

    No proxy from the environment: a proxy would connect on our behalf, past the guard."""
    return httpx.Client(transport=_GuardedTransport(allow_private=allow_private), trust_env=False, **options)
