"""Where a webhook may point: only at public addresses (no SSRF into the service's own network).

A webhook URL whose host is, or resolves to, a private, loopback, link-local (cloud metadata at 169.254.169.254),
multicast, reserved or unspecified address is refused when the admin saves it and again right before each try.
The try then connects to the address it checked (the URL's host rewritten to it, with the Host header and TLS
server name kept), so a DNS answer that changes between the check and the connection cannot swap it.
ALERTS_WEBHOOK_ALLOW_PRIVATE (default False) lifts the rule, for a development receiver on loopback.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

PRIVATE = ("The webhook URL points at a private or internal address ({address}): use a public https endpoint.")
UNRESOLVED = "The webhook's host {host} does not resolve."


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach (or does not resolve)."""


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: `url` with its host replaced by the checked address, plus the Host header and
    TLS server name of the original host. None fields when private addresses are allowed (connect as given)."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


def private_allowed() -> bool:
    return bool(getattr(settings, "ALERTS_WEBHOOK_ALLOW_PRIVATE", False))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or not ip.is_global)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal is itself). AddressRefused when it does not resolve."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise AddressRefused(UNRESOLVED.format(host=host)) from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_public(addresses: list[str]) -> None:
    for address in addresses:
        if not is_public(address):
            raise AddressRefused(PRIVATE.format(address=address))


def check_on_save(url: str) -> None:
    """At save: refuse a host that is, or now resolves to, a non-public address. A host that does not resolve
    (yet) is accepted here; each try checks again and refuses it then."""
    if private_allowed():
        return
    parts = urlsplit(url)
    try:
        addresses = resolve(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    except AddressRefused:
        return
    check_public(addresses)


def target(url: str) -> Target:
    """Right before a try: resolve the host, refuse unless every address is public, and pin the first one."""
    if private_allowed():
        return Target(url=url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    check_public(addresses)
    pinned = addresses[0]
    netloc = f"[{pinned}]" if ":" in pinned else pinned
    if parts.port:
        netloc += f":{parts.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    sni = host if parts.scheme == "https" and _literal(host) is None else None
    return Target(url=urlunsplit(parts._replace(netloc=netloc)), host_header=host_header, sni_hostname=sni)
