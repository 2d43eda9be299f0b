"""Which hosts the ``web`` analysis provider may ask: an allow-list, and never a link-local or
cloud metadata address.

The provider runs on the worker, which holds the Docker socket and registry and CI
credentials and may sit next to a cloud metadata service: a URL in an analysis policy must not
turn it into a proxy. A URL is asked only when its host (``host`` or ``host:port``) is on
``SLIPWAY_ANALYSIS_WEB_HOSTS`` (default: loopback only), and never when the host is, or
resolves to, a link-local or metadata address, listed or not.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

SETTING = "SLIPWAY_ANALYSIS_WEB_HOSTS"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# Link-local (AWS, GCP, Azure, OpenStack metadata at 169.254.169.254), AWS's IPv6 metadata
# address, and Alibaba Cloud's metadata service.
_BLOCKED_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"))
_BLOCKED_NAMES = ("metadata.google.internal", "metadata", "instance-data")

Resolver = Callable[[str, int], Iterable[str]]


class WebHostRefused(ValueError):
    """A URL the web provider must not ask (the message names the setting)."""


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def blocked_address(host: str) -> bool:
    """A link-local or cloud metadata address (or a metadata service's name)."""
    address = _address(host)
    if address is None:
        return host.casefold().rstrip(".") in _BLOCKED_NAMES
    return address.is_link_local or any(address in net for net in _BLOCKED_NETWORKS)


def _normal_host(host: str) -> str:
    address = _address(host)
    return str(address) if address is not None else host.casefold().rstrip(".")


@dataclass(frozen=True)
class Entry:
    host: str
    port: int | None  # None: any port


def parse_entry(text: str) -> Entry:
    """``host``, ``host:port``, ``::1`` or ``[::1]:port``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host or (port and not port.isdigit()):
        raise WebHostRefused(f"{SETTING}: {text!r} is not a host or host:port")
    return Entry(_normal_host(host), int(port) if port else None)


class WebHosts:
    """The allow-list of the web provider."""

    def __init__(self, hosts: Iterable[str] = LOOPBACK,
                 resolve: Resolver | None = None) -> None:
        self.entries = [parse_entry(host) for host in hosts]
        self.resolve = resolve or _resolve

    def check(self, url: str, *, resolve: bool = False) -> None:
        """Raise WebHostRefused unless ``url`` is an http(s) URL to a listed host that is not
        (and, with ``resolve``, does not resolve to) a link-local or metadata address."""
        try:
            parts = urlsplit(url)
            port = parts.port or _default_port(parts.scheme)
        except ValueError:
            raise WebHostRefused(f"{url!r} is not a URL with a valid host and port") from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise WebHostRefused(f"{url!r} is not an http:// or https:// URL with a host")
        if blocked_address(host):
            raise WebHostRefused(
                f"{host} is a link-local or cloud metadata address: the web provider never "
                f"asks it, whatever {SETTING} lists")
        normal = _normal_host(host)
        if not any(entry.host == normal and entry.port in (None, port)
                   for entry in self.entries):
            listed = ", ".join(f"{e.host}:{e.port}" if e.port else e.host
                               for e in self.entries) or "nothing"
            raise WebHostRefused(
                f"{host}:{port} is not on {SETTING} (a JSON list of host or host:port; it "
                f"lists {listed}): add it there on the worker and the CLI, or measure "
                "another way")
        if resolve and _address(host) is None:
            try:
                found = list(self.resolve(host, port))
            except OSError:
                return  # the request itself will say it cannot reach the host
            if any(blocked_address(address) for address in found):
                raise WebHostRefused(
                    f"{host} resolves to a link-local or cloud metadata address: the web "
                    f"provider never asks it, whatever {SETTING} lists")

    def same_origin(self, url: str, other: str) -> bool:
        """Whether ``other`` (a redirect's target) is the same scheme, host and port."""
        first, second = urlsplit(url), urlsplit(other)
        try:
            return (first.scheme, _normal_host(first.hostname or ""),
                    first.port or _default_port(first.scheme)) == (
                second.scheme, _normal_host(second.hostname or ""),
                second.port or _default_port(second.scheme))
        except ValueError:
            return False


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port,
                                                            proto=socket.IPPROTO_TCP)]
