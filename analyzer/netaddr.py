"""Address arithmetic: the network an IP address belongs to, one at a time or many at once.

:func:`analyzer.signals.subnet` and :func:`analyzer.signals.subnets` are what the rest of the analyzer calls (with
the configured prefixes); the IPv4 bit arithmetic lives here, apart from the signals' thresholds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import numpy as np

#: A dotted-quad IPv4 address as :mod:`ipaddress` accepts it (octets 0-255 without leading zeros).
_IPV4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_OCTET_BITS = 8
_OCTETS = ipaddress.IPV4LENGTH // _OCTET_BITS
_OCTET_MASK = (1 << _OCTET_BITS) - 1
_ALL_ONES = (1 << ipaddress.IPV4LENGTH) - 1


def network(ip: str | None, prefix_v4: int, prefix_v6: int) -> str | None:
    """The ``/prefix_v4`` (IPv4) or ``/prefix_v6`` (IPv6) network of an address, or ``None`` if it is not one."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = prefix_v4 if isinstance(addr, ipaddress.IPv4Address) else prefix_v6
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def networks(ips: Sequence[str], prefix_v4: int, prefix_v6: int) -> list[str | None]:
    """:func:`network` of each of ``ips``, the same strings, plain IPv4 addresses masked in one vectorised pass."""
    plain = np.fromiter((bool(_IPV4.fullmatch(ip)) if isinstance(ip, str) else False for ip in ips), dtype=bool,
                        count=len(ips))
    out: list[str | None] = [None if plain[i] else network(ip, prefix_v4, prefix_v6) for i, ip in enumerate(ips)]
    idx = np.flatnonzero(plain)
    if not len(idx):
        return out
    octets = np.array([ips[i].split(".") for i in idx], dtype=np.int64)
    shifts = _OCTET_BITS * np.arange(_OCTETS - 1, -1, -1)
    value = (octets << shifts).sum(axis=1)
    net = value & ((_ALL_ONES << (ipaddress.IPV4LENGTH - prefix_v4)) & _ALL_ONES)
    parts = (net[:, None] >> shifts) & _OCTET_MASK
    for k, i in enumerate(idx):
        out[i] = ".".join(map(str, parts[k].tolist())) + f"/{prefix_v4}"
    return out
