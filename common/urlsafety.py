"""Which webhook URLs condense may call.

A webhook URL comes from a client, and the notifier calls it from inside our network: without
these checks a client could make the notifier reach the cloud metadata endpoint, a database on
the private network or a service on loopback (server-side request forgery). The gateway checks
at submit time so the client hears about a bad URL at once; the notifier checks again at connect
time and connects only to the addresses it vetted, because a name can resolve differently by
then (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from common.errors import CondenseError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Shared address space (RFC 6598) is neither private nor global to the ipaddress module but is
# internal to carrier networks, so it is treated as private.
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


class UnsafeUrlError(CondenseError):
    """The webhook URL may not be called (scheme, host or the addresses it resolves to)."""

    code = "invalid_webhook_url"


class HostResolutionError(UnsafeUrlError):
    """The host did not resolve.

    At submit time this is as final as any other bad URL; the notifier, which meets it later,
    treats it as a passing DNS failure and retries.
    """


def _normalise_host(host: str) -> str:
    return host.rstrip(".").lower()


def _unmap(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1; judge such addresses by the IPv4 address they carry.
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def classify(address: str | IPAddress) -> str:
    """Name the kind of an address: global, loopback, private, link-local, multicast, ...

    The order matters: the ipaddress module calls loopback and link-local addresses private as
    well, so the narrower kinds are tested first.
    """
    ip = _unmap(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE):
        return "private"
    if not ip.is_global:
        return "reserved"
    return "global"


def _check_address(address: str, *, allow_loopback: bool, allow_private: bool) -> None:
    kind = classify(address)
    if kind == "global":
        return
    if kind == "loopback" and allow_loopback:
        return
    if kind == "private" and allow_private:
        return
    raise UnsafeUrlError(f"webhook host resolves to a {kind} address ({address}), which is not allowed")


def _parse(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrlError(f"webhook URL is not valid: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrlError(
            f"webhook URL must use https (or http where allowed), not {scheme or 'nothing'!r}"
        )
    host = _normalise_host(parts.hostname or "")
    if not host:
        raise UnsafeUrlError("webhook URL has no host")
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[str]:
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostResolutionError(f"webhook host {host!r} does not resolve") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # Drop an IPv6 zone id ("fe80::1%eth0") before parsing; the kind check still sees it.
        text = str(sockaddr[0]).split("%", 1)[0]
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise HostResolutionError(f"webhook host {host!r} does not resolve")
    return addresses


def resolve_and_check(
    url: str, *, allow_loopback: bool, allow_private: bool, http_allowlist: Iterable[str]
) -> list[str]:
    """Check ``url`` and return the addresses it may be called at, in resolver order.

    Every address the host resolves to must pass: a name with one public and one private address
    is refused, since which one a client library picks is out of our hands.
    """
    scheme, host, port = _parse(url)
    addresses = _resolve(host, port)
    for address in addresses:
        _check_address(address, allow_loopback=allow_loopback, allow_private=allow_private)
    if scheme == "http":
        allowed = {_normalise_host(name) for name in http_allowlist}
        # Plain http to loopback never leaves the machine, so it needs no allowlist entry.
        on_loopback = allow_loopback and all(classify(a) == "loopback" for a in addresses)
        if host not in allowed and not on_loopback:
            raise UnsafeUrlError(f"webhook URL must use https; plain http is not allowed for host {host!r}")
    return addresses


def check_webhook_url(
    url: str, *, allow_loopback: bool, allow_private: bool, http_allowlist: Iterable[str]
) -> None:
    """Raise :class:`UnsafeUrlError` unless the notifier may call ``url``.

    Resolves the host (blocking); call it from a thread in async code.
    """
    resolve_and_check(
        url, allow_loopback=allow_loopback, allow_private=allow_private, http_allowlist=http_allowlist
    )
