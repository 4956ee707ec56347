"""A CA bundle to verify a collector's certificate with, re-read when it changes.

The agent verifies the collector with it (--collector-ca-file), and a collector replica
verifies the replica it forwards a report to (--peer-ca-file): the same Secret's ca.crt.

cert-manager and the kubelet replace a mounted bundle by swapping a symlink, so
the file's identity (device, inode, size, modification time) is compared on each
new connection, one stat; kept connections were verified when they were made.
A bundle caught half-written keeps the last good one in use.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from kubecarbon.file_identity import file_identity

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
        try:
            self._identity = file_identity(path)  # before the read: a change after it shows
        except OSError as exc:
            raise CaBundleError(f"CA bundle {path}: cannot read it: {exc.strerror}") from None
        self._context = load_ca_context(path)

    def context(self) -> ssl.SSLContext:
        try:
            identity = file_identity(self.path)
        except OSError as exc:
            log.warning("CA bundle %s: %s; keeping the one loaded", self.path, exc.strerror)
            return self._context
        if identity != self._identity:
            try:
                self._context = load_ca_context(self.path)
            except CaBundleError as exc:
                log.warning("%s; keeping the one loaded", exc)
                return self._context
            self._identity = identity
            log.info("CA bundle %s changed: reloaded", self.path)
        return self._context
