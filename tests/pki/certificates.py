"""Certificate authorities and server certificates for the TLS tests, made with Debian's openssl.

What cert-manager puts in a kubernetes.io/tls Secret: `tls.crt` (the server's
certificate), `tls.key` (its key) and `ca.crt` (the CA that signed it).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl_missing() -> bool:
    return shutil.which("openssl") is None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Authority:
    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path, name: str = "kubecarbon-test-ca") -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", str(key), "-out", str(cert))
        return cls(cert, key)

    def issue(self, directory: Path, names: list[str], *, stem: str = "tls") -> ServerCertificate:
        """A server certificate for DNS names and IP addresses, signed by this authority."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key, request = (directory / f"{stem}.crt", directory / f"{stem}.key",
                              directory / f"{stem}.csr")
        alt_names = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() or ":" in n
                             else f"DNS:{n}" for n in names)
        extensions = directory / f"{stem}.ext"
        extensions.write_text(f"subjectAltName={alt_names}\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(request))
        _openssl("x509", "-req", "-days", "1", "-in", str(request), "-CA", str(self.cert),
                 "-CAkey", str(self.key), "-CAcreateserial", "-extfile", str(extensions),
                 "-out", str(cert))
        return ServerCertificate(cert, key, self.cert)


@dataclass(frozen=True)
class ServerCertificate:
    cert: Path
    key: Path
    ca: Path

    def secret_data(self) -> dict[str, bytes]:
        """The files as cert-manager's Secret holds them."""
        return {"tls.crt": self.cert.read_bytes(), "tls.key": self.key.read_bytes(),
                "ca.crt": self.ca.read_bytes()}


class SecretVolume:
    """A directory updated the way the kubelet updates a Secret volume.

    Each version is a new hidden directory; the `..data` symlink is swapped to it in one
    rename, and every file is a symlink through `..data`. A reader thus sees all old or
    all new files, each with a new inode.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._versions = 0

    def path(self, name: str) -> Path:
        return self.directory / name

    def write(self, files: dict[str, bytes]) -> None:
        self._versions += 1
        version = self.directory / f"..version_{self._versions}"
        version.mkdir()
        for name, data in files.items():
            (version / name).write_bytes(data)
        staged = self.directory / "..data_tmp"
        staged.symlink_to(version.name)
        staged.rename(self.directory / "..data")
        for name in files:
            link = self.directory / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for name in {p.name for p in self.directory.iterdir()} - set(files) - {"..data"}:
            if not name.startswith(".."):
                (self.directory / name).unlink()
