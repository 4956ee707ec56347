"""Build the two kubecarbon images from deploy/Dockerfile with podman and export them.

    python3 deploy/build_images.py                 # what `make image` runs
    python3 deploy/build_images.py --base python:3.12-slim-bookworm
    python3 deploy/build_images.py --offline       # never pull (the test suites)

kubecarbon:<version> is the Dockerfile's default target (collector, demo, report);
kubecarbon-agent:<version> its `agent` target, the agent extra only. Both are tagged under
docker.io/library/, the name a kubelet gives the chart's default `kubecarbon:<version>`.

The base is the Dockerfile's BASE_IMAGE (or --base): taken from podman's storage, else
pulled (not with --offline). When that fails for the default base, the build uses a
Debian bookworm base with Python made here by mmdebstrap from Debian's packages, cached
as a tarball under the cache directory; the output says which base was used.

pip inside the build gets the host's effective pip configuration (its files and PIP_*
variables, as `pip config list` shows them) as /etc/pip.conf, and every file that
configuration names (CA bundle, constraints, local indexes) mounted read-only at the same
path: a build behind an inspecting proxy trusts what the host trusts. Build-time mounts
never land in an image.

Each image is saved as a docker-archive (`ctr -n k8s.io images import` and `podman load`
read it) in the cache directory, /var/cache/kubecarbon/images unless
KUBECARBON_IMAGE_CACHE or --cache-dir says otherwise; images.json there lists the images,
archives and sizes. A warm run builds from podman's layer cache and skips exports whose
image id has not changed.
"""

from __future__ import annotations

import argparse
import configparser
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DEFAULT_CACHE_DIR = Path("/var/cache/kubecarbon/images")
# The name a kubelet and containerd give an image reference without a registry.
IMPLICIT_REGISTRY = "docker.io/library/"
# Dockerfile target -> image name; the agent first, since the full image builds on its layers.
TARGETS = {"agent": "kubecarbon-agent", "kubecarbon": "kubecarbon"}

LOCAL_BASE = "localhost/kubecarbon-base:bookworm-python3"
LOCAL_BASE_ARCHIVE = "kubecarbon-base-bookworm-python3.tar"
LOCAL_BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# What the python:*-slim images leave out too; copyright files stay.
LOCAL_BASE_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# An imported tarball has no image config: the settings python:*-slim images carry.
LOCAL_BASE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
PULL_TIMEOUT_SECONDS = 600


def default_cache_dir() -> Path:
    return Path(os.environ.get("KUBECARBON_IMAGE_CACHE", DEFAULT_CACHE_DIR))


def log(message: str) -> None:
    print(f"build_images: {message}", file=sys.stderr, flush=True)


# --- what to build ------------------------------------------------------------------------


def package_version(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def dockerfile_default_base(dockerfile_text: str) -> str:
    """The default of `ARG BASE_IMAGE=` (the one home of the public base's name)."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile_text, re.MULTILINE)
    if match is None:
        raise ValueError("deploy/Dockerfile has no `ARG BASE_IMAGE=<image>` line")
    return match.group(1)


def image_reference(target: str, version: str) -> str:
    return f"{IMPLICIT_REGISTRY}{TARGETS[target]}:{version}"


# --- the host's pip configuration, forwarded into the build -------------------------------

_PIP_CONFIG_LINE = re.compile(r"^(?P<section>[^.\s]*)\.(?P<key>[\w-]+)='(?P<value>.*)'$")


def pip_config_sections(listing: str) -> dict[str, dict[str, str]]:
    """`pip config list` output -> {section: {key: value}}.

    PIP_* variables show as section ":env:"; pip ranks them above every file, so they
    land in [global] over what the files say.
    """
    sections: dict[str, dict[str, str]] = {}
    from_environment: dict[str, str] = {}
    for line in listing.splitlines():
        match = _PIP_CONFIG_LINE.match(line.strip())
        if match is None:
            continue
        section, key, value = match.group("section", "key", "value")
        if section == ":env:":
            from_environment[key] = value
        else:
            sections.setdefault(section, {})[key] = value
    if from_environment:
        sections.setdefault("global", {}).update(from_environment)
    return sections


def pip_conf_text(sections: Mapping[str, Mapping[str, str]]) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    for section, entries in sections.items():
        parser[section] = dict(entries)
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in parser[section].items()]
    return "\n".join(lines) + "\n" if lines else ""


def referenced_host_paths(sections: Mapping[str, Mapping[str, str]]) -> list[Path]:
    """Existing files and directories the configuration names, to mount at the same path.

    A file:// index brings its parent directory: its pages link to the distributions
    relative to themselves (simple/<project>/ -> ../../files/<wheel>).
    """
    paths: set[Path] = set()
    for entries in sections.values():
        for value in entries.values():
            for token in value.split():
                if token.startswith("file://"):
                    path = Path(urlsplit(token).path)
                    path = path.parent if path.is_dir() else path
                elif token.startswith("/"):
                    path = Path(token)
                else:
                    continue
                if path.exists():
                    paths.add(path)
    return sorted(paths)


def host_pip_listing(python: str = sys.executable) -> str:
    """The host pip's effective configuration; empty when this Python has no pip."""
    result = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                            text=True, check=False)
    return result.stdout if result.returncode == 0 else ""


# --- the base image -----------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    reference: str
    origin: str  # one line for the output: where it came from


def ensure_debian_packages(packages: Sequence[str]) -> None:
    missing = [p for p in packages
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"build_images: install the Debian packages {' '.join(missing)} "
                         "(as root: apt-get install ...)")
    log(f"installing Debian packages: {' '.join(missing)}")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=900"]
    subprocess.run([*apt, "update", "-qq"], check=True)
    subprocess.run([*apt, "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def image_exists(podman: str, reference: str) -> bool:
    return subprocess.run([podman, "image", "exists", reference]).returncode == 0


def pull(podman: str, reference: str) -> str | None:
    """None when pulled, else podman's last line of error."""
    try:
        result = subprocess.run([podman, "pull", "--quiet", reference], capture_output=True,
                                text=True, timeout=PULL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return f"no answer in {PULL_TIMEOUT_SECONDS} s"
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"podman pull exited {result.returncode}"


def local_debian_base(podman: str, cache_dir: Path) -> Base:
    """The bookworm + Python base: from storage, else the cached tarball, else mmdebstrap."""
    if image_exists(podman, LOCAL_BASE):
        return Base(LOCAL_BASE, f"{LOCAL_BASE}, built earlier with mmdebstrap")
    archive = cache_dir / LOCAL_BASE_ARCHIVE
    origin = f"{LOCAL_BASE} imported from {archive}"
    if not archive.is_file():
        ensure_debian_packages(["mmdebstrap"])
        log(f"building {archive} with mmdebstrap (Debian bookworm minbase: "
            f"{', '.join(LOCAL_BASE_PACKAGES)}); about a minute with a fast mirror")
        partial = archive.with_name(archive.name + ".partial")
        command = ["mmdebstrap", "--variant=minbase", "--quiet",
                   # merged /usr without the usrmerge package, which would pull in perl
                   "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                   *(f"--dpkgopt={option}" for option in LOCAL_BASE_DPKG_OPTIONS),
                   f"--include={','.join(LOCAL_BASE_PACKAGES)}", "--format=tar",
                   "bookworm", str(partial)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        partial.rename(archive)
        origin = f"{LOCAL_BASE} built with mmdebstrap into {archive}"
    changes = [arg for change in LOCAL_BASE_CONFIG for arg in ("--change", change)]
    subprocess.run([podman, "import", "--quiet", *changes, str(archive), LOCAL_BASE],
                   check=True, stdout=subprocess.DEVNULL)
    return Base(LOCAL_BASE, origin)


def resolve_base(podman: str, requested: str | None, cache_dir: Path,
                 offline: bool = False) -> Base:
    public = requested or dockerfile_default_base(DOCKERFILE.read_text())
    if image_exists(podman, public):
        return Base(public, f"{public}, already in podman's storage")
    error = "--offline" if offline else pull(podman, public)
    if error is None:
        return Base(public, f"{public}, pulled")
    if requested:
        raise SystemExit(f"build_images: cannot pull the requested base {public}: {error}")
    log(f"no {public} ({error}): using a local Debian base")
    return local_debian_base(podman, cache_dir)


# --- build and export ---------------------------------------------------------------------


def build_command(podman: str, target: str, reference: str, base: str,
                  pip_conf: Path | None, host_paths: Sequence[Path]) -> list[str]:
    mounts = [f"{path}:{path}:ro" for path in host_paths]
    if pip_conf is not None:
        mounts.append(f"{pip_conf}:/etc/pip.conf:ro")
    return [podman, "build", "--quiet", "--layers", "--pull=never",
            # The build needs only the package index: the host's network, no bridge or NAT.
            "--network=host",
            "--file", str(DOCKERFILE), "--target", target, "--tag", reference,
            "--build-arg", f"BASE_IMAGE={base}",
            *(arg for mount in mounts for arg in ("--volume", mount)),
            str(REPO_ROOT)]


def image_id(podman: str, reference: str) -> str:
    return subprocess.run([podman, "image", "inspect", "--format", "{{.Id}}", reference],
                          check=True, capture_output=True, text=True).stdout.strip()


def image_size(podman: str, reference: str) -> int:
    return int(subprocess.run([podman, "image", "inspect", "--format", "{{.Size}}", reference],
                              check=True, capture_output=True, text=True).stdout.strip())


def export(podman: str, reference: str, archive: Path) -> bool:
    """Save as a docker-archive unless the archive already holds this image id."""
    marker = archive.with_name(archive.name + ".id")
    current = image_id(podman, reference)
    if archive.is_file() and marker.is_file() and marker.read_text().strip() == current:
        return False
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    subprocess.run([podman, "save", "--quiet", "--format", "docker-archive",
                    "--output", str(partial), reference], check=True)
    partial.rename(archive)
    marker.write_text(current + "\n")
    return True


@contextmanager
def locked(cache_dir: Path) -> Iterator[None]:
    """One build at a time per cache directory (make image beside a test harness)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base image (default: the Dockerfile's BASE_IMAGE, "
                        "or a local Debian base where it cannot be pulled)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--offline", action="store_true", help="never pull: the base from "
                        "podman's storage, else the local Debian base (what the tests use)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    ensure_debian_packages(["podman"])
    podman = shutil.which("podman") or "podman"
    version = package_version()
    with locked(args.cache_dir), tempfile.TemporaryDirectory() as scratch:
        base = resolve_base(podman, args.base, args.cache_dir, args.offline)
        log(f"base: {base.origin}")
        sections = pip_config_sections(host_pip_listing())
        pip_conf = None
        if sections:
            pip_conf = Path(scratch) / "pip.conf"
            pip_conf.write_text(pip_conf_text(sections))
            log("pip in the build uses the host's pip configuration: "
                + ", ".join(f"{s}.{k}" for s, entries in sections.items() for k in entries))
        host_paths = referenced_host_paths(sections)
        images = []
        for target in TARGETS:
            reference = image_reference(target, version)
            step = time.monotonic()
            subprocess.run(build_command(podman, target, reference, base.reference, pip_conf,
                                         host_paths), check=True, stdout=subprocess.DEVNULL)
            archive = args.cache_dir / f"{TARGETS[target]}-{version}.tar"
            saved = export(podman, reference, archive)
            size = image_size(podman, reference)
            log(f"{reference}: {size / 1e6:.0f} MB, {archive} "
                f"({'saved' if saved else 'unchanged'}) in {time.monotonic() - step:.0f} s")
            images.append({"target": target, "reference": reference, "size_bytes": size,
                           "archive": str(archive), "id": image_id(podman, reference)})
        summary = {"base": base.reference, "base_origin": base.origin, "images": images}
        (args.cache_dir / "images.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done in {time.monotonic() - started:.0f} s; import on a containerd node with "
        f"`ctr -n k8s.io images import <archive>`; list: {args.cache_dir / 'images.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
