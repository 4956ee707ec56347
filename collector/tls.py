"""The collector's TLS certificate, reloaded when its files change, without a restart.

cert-manager renews a certificate by updating its Secret; the kubelet then swaps
the mounted files (a symlink swap), and a file may also be rewritten in place.
Each TLS handshake looks whether the two files changed (kubecarbon.file_backed:
one stat each); on a change it loads a fresh context and the handshake, and every
later one, uses it. A pair caught mid-update (a certificate that does not match the
key yet) keeps the last good one in use until the next handshake looks again.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from kubecarbon.file_backed import FileBackedValue

log = logging.getLogger(__name__)


class CertificateError(Exception):
    """The certificate or key file cannot be used; the message names the file."""


def load_server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context with the certificate chain and key; CertificateError names the file."""
    for flag, path in (("--tls-cert-file", cert_file), ("--tls-key-file", key_file)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise CertificateError(f"argument {flag}: cannot read {path}: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise CertificateError(f"argument --tls-key-file: {key_file} is not the key of the "
                                   f"certificate in {cert_file}") from None
        raise CertificateError(f"argument --tls-cert-file/--tls-key-file: {cert_file}, "
                               f"{key_file}: not a PEM certificate and key ({exc.reason})"
                               ) from None
    return context


class ReloadingCertificate:
    """`context` serves TLS with the current files; give it to the server (ssl_context)."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._current = FileBackedValue(  # the errors at start
            [cert_file, key_file], lambda: load_server_context(cert_file, key_file),
            bad_content=(CertificateError,), logger=log, what=f"TLS certificate {cert_file}",
        )
        # The context the server holds picks, per handshake, the current one.
        self.context = load_server_context(cert_file, key_file)
        self.context.sni_callback = self._choose

    @property
    def reloads(self) -> int:
        return self._current.reloads

    def current(self) -> ssl.SSLContext:
        """The context for the files as they are now (reloaded if they changed)."""
        return self._current.current()

    def _choose(self, connection: ssl.SSLObject, server_name: str | None,
                context: ssl.SSLContext) -> None:
        # Called by OpenSSL for every ClientHello, with or without a server name.
        connection.context = self.current()
