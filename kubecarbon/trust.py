"""A CA bundle to verify a collector's certificate with, re-read when it changes.

The agent verifies the collector with it (--collector-ca-file), and a collector replica
verifies the replica it forwards a report to (--peer-ca-file): the same Secret's ca.crt.

cert-manager and the kubelet replace a mounted bundle by swapping a symlink, so
each new connection looks whether the file changed (kubecarbon.file_backed: one
stat); kept connections were verified when they were made. A bundle caught
half-written keeps the last good one in use.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from kubecarbon.file_backed import FileBackedValue

log = logging.getLogger(__name__)


class CaBundleError(OSError):
    """The CA bundle cannot be read or holds no certificate."""


def load_ca_context(path: Path) -> ssl.SSLContext:
    """A client context trusting only the certificates in `path`, the server's name checked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no system CAs: only the bundle's
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise CaBundleError(f"CA bundle {path}: not PEM certificates ({exc.reason})") from None
    except OSError as exc:
        raise CaBundleError(f"CA bundle {path}: cannot read it: {exc.strerror}") from None
    if not context.get_ca_certs():
        raise CaBundleError(f"CA bundle {path}: no certificate in it")
    return context


class CaBundle:
    """An SSL context from a CA file; `context()` is current with the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._context = FileBackedValue(
            [path], lambda: load_ca_context(path),
            bad_content=(CaBundleError,), logger=log, what=f"CA bundle {path}",
        )

    def context(self) -> ssl.SSLContext:
        return self._context.current()
