"""HOST:PORT, the one parser of every `--listen` flag.

The rule for the host: an IPv6 address goes in brackets (`[::1]:9881`); an empty
host (`:9880`) means every IPv4 interface, 0.0.0.0, as in Prometheus's
`--web.listen-address=:9090`. Port 0 lets the system pick a free port.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

ANY_HOST = "0.0.0.0"
MAX_PORT = 65535


class HostPort(NamedTuple):
    host: str
    port: int


def parse_host_port(text: str) -> HostPort:
    """`HOST:PORT` -> HostPort; raises argparse.ArgumentTypeError naming the value."""
    host, colon, port = text.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or int(port) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with PORT 0..{MAX_PORT}")
    return HostPort(host.strip("[]") or ANY_HOST, int(port))
