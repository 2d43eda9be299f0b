"""DNS records for swimlane hosts via RFC 2136 dynamic updates signed with TSIG (`dnspython`).

Works with any server that accepts signed dynamic updates (bind9, PowerDNS, Knot, …). Every
operation is idempotent, so an activity can retry it freely: ``upsert`` replaces the whole
record set, ``delete`` of something absent succeeds (RFC 2136 deletes carry no prerequisite).

Errors are split like the other integrations: :class:`DnsError` (a
:class:`~integrations.errors.PermanentRuntimeError`: wrong key, zone not served, refused) needs
a person; :class:`DnsUnavailableError` (refused connection, timeout) is worth retrying.
The TSIG secret never appears in a message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.errors import PermanentRuntimeError
from schemas.settings import get_settings

DEFAULT_PORT = 53
TIMEOUT_SECONDS = 5.0
# Record types whose data is a host name: their values are taken as absolute names (a lane's
# CNAME points at an ingress host, never at something relative to the lane zone).
NAME_TYPES = frozenset({"CNAME", "NS", "PTR", "DNAME"})
# The TSIG errors dnspython raises when the server answers NOTAUTH to a signed request.
_TSIG_ERRORS: dict[type[dns.tsig.PeerError], str] = {
    dns.tsig.PeerBadKey: "BADKEY: the server does not know this key name/algorithm",
    dns.tsig.PeerBadSignature: "BADSIG: the key secret does not match the server's",
    dns.tsig.PeerBadTime: "BADTIME: the clocks of the worker and the server differ",
    dns.tsig.PeerBadTruncation: "BADTRUNC",
}
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class DnsError(PermanentRuntimeError):
    """The DNS server refused or could not apply the request: a retry will not help."""


class DnsUnavailableError(Exception):
    """The DNS server could not be reached or did not answer in time: worth retrying."""


def parse_server(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    text = text.strip()
    if not text:
        raise ValueError("empty DNS server address")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    # No colon, or several (a bare IPv6 address): the default port.
    return text, DEFAULT_PORT


def absolute_name(name: str, zone: str) -> dns.name.Name:
    """``name`` as an absolute name inside ``zone``.

    ``name.`` is absolute; ``@`` or ``""`` is the zone apex; a name already ending in the zone
    (``shop.lane1.lanes.test``) is taken as absolute, since nobody means
    ``shop.lane1.lanes.test.lanes.test``; anything else is relative to the zone. A name outside
    the zone raises :class:`DnsError`, because the server would answer NOTZONE anyway and
    the message is clearer here.
    """
    origin = dns.name.from_text(zone)
    text = name.strip()
    if text in ("", "@"):
        return origin
    try:
        as_absolute = dns.name.from_text(text)
        if text.endswith(".") or as_absolute.is_subdomain(origin):
            result = as_absolute
        else:
            result = dns.name.from_text(text, origin=origin)
    except dns.exception.DNSException as error:
        raise DnsError(f"invalid DNS name {name!r} in zone {zone}: {error}") from None
    if not result.is_subdomain(origin):
        raise DnsError(f"DNS name {name!r} is outside zone {origin.to_text(omit_final_dot=True)}")
    return result


def record_type_for(target: str) -> str:
    """``A`` for an IPv4 target, ``AAAA`` for IPv6, otherwise ``CNAME`` (a host name)."""
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return "CNAME"
    return "A" if address.version == 4 else "AAAA"


def _check_label(label: str, what: str) -> str:
    if not _LABEL.fullmatch(label):
        raise ValueError(
            f"{what} {label!r} is not a DNS-1123 label (lowercase a-z, 0-9, '-', at most 63)"
        )
    return label


def lane_records(
    lane: str,
    services: list[str],
    biz_names: list[str],
    domain: str,
    target: str = "127.0.0.1",
) -> list[tuple[str, str]]:
    """The swimlane's DNS names with their record type, in a stable order without duplicates.

    Internal names are ``<service>.<lane>``, relative to the DNS zone; external names are
    ``<biz>-<lane>.<domain>.`` (absolute; relative to the zone when ``domain`` is empty).
    The type follows ``target``: ``A``/``AAAA`` for an address, ``CNAME`` for a host name.
    Labels are validated, not normalised: the lane name is normalised once by the workflow,
    and silently changing a service name here would create records nobody asked for.
    """
    _check_label(lane, "lane name")
    rtype = record_type_for(target)
    names: list[str] = []
    for service in services:
        names.append(f"{_check_label(service, 'service name')}.{lane}")
    suffix = f".{domain.strip('.')}." if domain.strip(".") else ""
    for biz in biz_names:
        label = _check_label(f"{_check_label(biz, 'business name')}-{lane}", "external label")
        names.append(f"{label}{suffix}")
    return [(name, rtype) for name in dict.fromkeys(names)]


@dataclass
class Rfc2136Dns:
    """Upsert, delete and look up records in one zone of one authoritative server.

    ``key_secret`` is the base64 TSIG secret, or a callable returning it: the worker passes a
    callable so the secret is read from settings at call time, never held in a workflow.
    """

    server: str
    port: int
    zone: str
    key_name: str
    key_secret: str | Callable[[], str] = field(repr=False)
    algorithm: str = "hmac-sha256"
    ttl: int = 60
    timeout: float = TIMEOUT_SECONDS

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)

    def _zone_text(self) -> str:
        return self.origin.to_text(omit_final_dot=True)

    def _address(self) -> str:
        """dnspython wants an address literal; a host name is resolved at each call so a
        server moving to a new address is followed."""
        try:
            ipaddress.ip_address(self.server)
            return self.server
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.server, self.port, proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise DnsUnavailableError(
                f"DNS server {self.server} does not resolve: {error}"
            ) from error
        return str(infos[0][4][0])

    def _keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        secret = self.key_secret() if callable(self.key_secret) else self.key_secret
        if not secret:
            raise DnsError(f"no TSIG secret configured for key {self.key_name!r}")
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            # Checked here because dnspython's own error would come from deep in the update.
            raise DnsError(f"the TSIG secret of key {self.key_name!r} is not base64") from None
        keyring = dns.tsigkeyring.from_text({self.key_name: (self.algorithm, secret)})
        try:
            # Fails now on an unsupported algorithm, rather than as a bare KeyError mid-send.
            for key in keyring.values():
                dns.tsig.get_context(key)
        except (KeyError, NotImplementedError):
            raise DnsError(
                f"TSIG algorithm {self.algorithm!r} of key {self.key_name!r} is not supported"
            ) from None
        return keyring

    def _send(self, message: dns.message.Message, name: dns.name.Name) -> dns.message.Message:
        """Send over TCP: a refused connection fails at once (UDP would only time out) and
        there is no truncation to retry."""
        where = f"{self.server}:{self.port}"
        try:
            response = dns.query.tcp(message, self._address(), port=self.port, timeout=self.timeout)
        except dns.tsig.PeerError as error:
            reason = _TSIG_ERRORS.get(type(error), type(error).__name__)
            raise DnsError(
                f"DNS server {where} answered NOTAUTH for {name} in zone {self._zone_text()}"
                f" (TSIG {reason}; key {self.key_name!r})"
            ) from None
        except dns.exception.Timeout as error:
            raise DnsUnavailableError(
                f"DNS server {where} did not answer within {self.timeout}s"
            ) from error
        except OSError as error:
            raise DnsUnavailableError(f"DNS server {where} unreachable: {error}") from error
        return response

    def _check(self, response: dns.message.Message, name: dns.name.Name, action: str) -> None:
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise DnsError(
                f"DNS {action} of {name} in zone {self._zone_text()} failed on"
                f" {self.server}:{self.port}: {dns.rcode.to_text(rcode)}"
            )

    def _update(self) -> dns.update.UpdateMessage:
        try:
            return dns.update.UpdateMessage(
                self.origin, keyring=self._keyring(), keyalgorithm=self.algorithm
            )
        except dns.exception.DNSException as error:
            # e.g. an unknown algorithm name; the message never holds the secret.
            raise DnsError(f"invalid TSIG key {self.key_name!r}: {error}") from None

    def upsert(self, name: str, rtype: str, value: str) -> None:
        """Make ``value`` the only record of type ``rtype`` at ``name`` (replacing others)."""
        owner = absolute_name(name, self.zone)
        rtype = rtype.upper()
        data = value.strip()
        if rtype in NAME_TYPES and not data.endswith("."):
            data += "."
        update = self._update()
        try:
            update.replace(owner, self.ttl, rtype, data)
        except dns.exception.DNSException as error:
            raise DnsError(f"invalid {rtype} record {value!r} for {owner}: {error}") from None
        self._check(self._send(update, owner), owner, "upsert")

    def delete(self, name: str, rtype: str | None = None) -> None:
        """Remove the ``rtype`` records at ``name``, or all of them; absent is fine."""
        owner = absolute_name(name, self.zone)
        update = self._update()
        if rtype is None:
            update.delete(owner)
        else:
            update.delete(owner, rtype.upper())
        self._check(self._send(update, owner), owner, "delete")

    def lookup(self, name: str, rtype: str) -> list[str]:
        """The ``rtype`` values at ``name`` asked of the server itself (no resolver, no cache),
        sorted; host names without the final dot, as :meth:`upsert` accepts them."""
        owner = absolute_name(name, self.zone)
        rtype = rtype.upper()
        query = dns.message.make_query(owner, rtype)
        response = self._send(query, owner)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return []
        self._check(response, owner, "lookup")
        rdtype = dns.rdatatype.from_text(rtype)
        # Exact owner and type: a CNAME chain's other records in the answer are not ours.
        rrset = response.get_rrset(response.answer, owner, dns.rdataclass.IN, rdtype)
        if rrset is None:
            return []
        values = [rdata.to_text() for rdata in rrset]
        if rtype in NAME_TYPES:
            values = [value.rstrip(".") for value in values]
        return sorted(values)


class DnsSettings(BaseSettings):
    """``SLIPWAY_DNS_*``: where lane records go. An empty ``dns_server`` means no DNS."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore")

    dns_server: str = ""  # host:port of the primary accepting RFC 2136 updates
    dns_zone: str = ""
    dns_key_name: str = ""
    dns_algorithm: str = "hmac-sha256"
    # A credential NAME; its value (the base64 TSIG secret) is read from
    # Settings.credential at call time, so it never travels through a workflow.
    dns_credential: str = "dns"
    dns_ttl: int = 60
    dns_target: str = "127.0.0.1"  # the IP or host name lane records point to

    @property
    def enabled(self) -> bool:
        return bool(self.dns_server.strip())

    def client(self, secret: Callable[[], str] | None = None) -> Rfc2136Dns | None:
        """The configured client, or ``None`` when DNS is off. ``secret`` defaults to reading
        the credential from :func:`schemas.settings.get_settings` at each request."""
        if not self.enabled:
            return None
        host, port = parse_server(self.dns_server)
        credential = self.dns_credential

        def from_settings() -> str:
            return get_settings().credential(credential)

        return Rfc2136Dns(
            server=host,
            port=port,
            zone=self.dns_zone,
            key_name=self.dns_key_name,
            key_secret=secret or from_settings,
            algorithm=self.dns_algorithm,
            ttl=self.dns_ttl,
        )
