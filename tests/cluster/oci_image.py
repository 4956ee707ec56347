"""Container images for a node without a registry: OCI image archives written from files.

`write_image_archive` makes an OCI image layout tarball of one uncompressed
layer holding the given files (static binaries: the pause process, the
workloads' busy loop), the archive `ctr images import` takes. The image name
is stored as `io.containerd.image.name`, the annotation containerd's importer
reads, and as `org.opencontainers.image.ref.name` for other tools.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
FIXED_MTIME = 0  # reproducible archives: the same files give the same digests


def _layer(files: Mapping[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source in sorted(files.items()):
            data = source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "size": len(data)}


def write_image_archive(
    path: Path,
    name: str,
    files: Mapping[str, Path],
    *,
    entrypoint: Sequence[str],
    user: str = "",
) -> Path:
    """An OCI archive at `path` of image `name` (e.g. "localhost/x/pause:3.4") holding `files`.

    `files` maps a path inside the image (no leading slash) to a file on this machine.
    """
    layer = _layer(files)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "User": user},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": _descriptor(CONFIG_TYPE, config),
        "layers": [_descriptor(LAYER_TYPE, layer)],
    }).encode()
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            **_descriptor(MANIFEST_TYPE, manifest),
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": tag},
        }],
    }).encode()
    entries = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
               "index.json": index}
    for blob in (layer, config, manifest):
        entries[f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}"] = blob
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry_name, data in entries.items():
            info = tarfile.TarInfo(entry_name)
            info.size, info.mtime = len(data), FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    return path


def compile_static(source: Path, output: Path) -> Path:
    """A statically linked binary from one C file (images here have no libc)."""
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-static", "-o", str(output), str(source)],
                   check=True, capture_output=True)
    return output
