"""Which URLs the server may fetch on someone else's behalf (SSRF guard).

Outbound webhooks (a URL an integrator typed) and the console's avatar proxy (a URL a platform sent) make the
server fetch addresses that outsiders chose. Only plain http(s) URLs without credentials whose host resolves to
public addresses only are allowed; private, loopback, link-local, multicast and reserved addresses (the
database, the cloud's metadata service, the office network) are refused unless a development setting allows
them. The check resolves the host itself, so a name pointing at 127.0.0.1 is refused like the literal address;
a host that changes its answer between this check and the fetch (DNS rebinding) is not covered.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


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
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise UrlRefused(f"The host {host!r} cannot be resolved.", "url_unresolvable") from None
    if allow_private:
        return addresses
    for address in addresses:
        if refused_address(ipaddress.ip_address(address.split("%", 1)[0])):
            raise UrlRefused(f"The host {host!r} resolves to a private, loopback, link-local or reserved address.",
                             "url_refused")
    return addresses
