"""The addresses a function may never reach: the IANA special-purpose registries, in one place.

Both walls read this list: flux.json validation refuses an ``allow_net`` entry that
is a literal address inside it, and the Deno worker gets it as ``--deny-net``, which
Deno checks against the *resolved* address, so a public name pointing at a private
address is refused too. Sources: the IANA IPv4 and IPv6 Special-Purpose Address
Registries (RFC 6890 and updates), plus multicast (224.0.0.0/4, ff00::/8).

Deno 2.9 accepts IPv4 CIDRs in ``--deny-net`` but only literal IPv6 addresses (no
``[fc00::]/7``), so the IPv6 ranges are enforced on literals (flux.json) and the
two IPv6 addresses every machine has (``::1``, ``::``) are denied by name.
"""

from __future__ import annotations

import ipaddress

IPV4_DENIED: tuple[str, ...] = (
    "0.0.0.0/8",          # "this network"
    "10.0.0.0/8",         # private
    "100.64.0.0/10",      # shared address space (CGNAT)
    "127.0.0.0/8",        # loopback
    "169.254.0.0/16",     # link-local (cloud metadata lives here)
    "172.16.0.0/12",      # private
    "192.0.0.0/24",       # IETF protocol assignments
    "192.0.2.0/24",       # documentation (TEST-NET-1)
    "192.31.196.0/24",    # AS112-v4
    "192.52.193.0/24",    # AMT
    "192.88.99.0/24",     # deprecated 6to4 relay anycast
    "192.168.0.0/16",     # private
    "192.175.48.0/24",    # direct delegation AS112
    "198.18.0.0/15",      # benchmarking
    "198.51.100.0/24",    # documentation (TEST-NET-2)
    "203.0.113.0/24",     # documentation (TEST-NET-3)
    "224.0.0.0/4",        # multicast
    "240.0.0.0/4",        # reserved, and the limited broadcast 255.255.255.255
)

IPV6_DENIED: tuple[str, ...] = (
    "::/128",             # unspecified
    "::1/128",            # loopback
    "::ffff:0:0/96",      # IPv4-mapped (would reach any IPv4 address, private ones included)
    "64:ff9b::/96",       # IPv4/IPv6 translation
    "64:ff9b:1::/48",     # local-use IPv4/IPv6 translation
    "100::/64",           # discard-only
    "2001::/23",          # IETF protocol assignments (Teredo, benchmarking, ORCHID ...)
    "2001:db8::/32",      # documentation
    "2002::/16",          # 6to4
    "3fff::/20",          # documentation
    "5f00::/16",          # SRv6 SIDs
    "fc00::/7",           # unique local
    "fe80::/10",          # link-local
    "fec0::/10",          # site-local (deprecated)
    "ff00::/8",           # multicast
)

DENIED_NAMES: tuple[str, ...] = ("localhost", "localhost.localdomain")

_NETWORKS = tuple(ipaddress.ip_network(n) for n in (*IPV4_DENIED, *IPV6_DENIED))
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_denied(address: IpAddress) -> bool:
    """True when ``address`` lies in a special-purpose range (an IPv4-mapped IPv6 address counts as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return True
    return any(address.version == net.version and address in net for net in _NETWORKS) or not address.is_global


def deno_deny_net() -> list[str]:
    """The ``--deny-net`` entries Deno accepts: every IPv4 CIDR, the names, and the IPv6 literals it can take."""
    return [*IPV4_DENIED, *DENIED_NAMES, "[::1]", "[::]"]
