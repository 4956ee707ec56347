"""Real processes for the demo, report and status-page tests: Prometheus and its helpers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    """An ephemeral loopback port the OS just handed out (for tools that cannot report theirs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout_seconds: float,
                  process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout_seconds} s: {last_error}")


def stop_process(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen
    log_path: Path


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[list[str], float], RunningPrometheus]]:
    """Start the real Prometheus scraping the given host:port targets; stopped after the test."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed: run `make apt-deps` (Debian package prometheus)")
    started: list[RunningPrometheus] = []

    def start(targets: list[str], scrape_interval_seconds: float = 1.0) -> RunningPrometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        interval = f"{int(scrape_interval_seconds * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": "kubecarbon", "static_configs": [{"targets": targets}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log_path = workdir / "prometheus.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            )
        running = RunningPrometheus(f"http://127.0.0.1:{port}", process, log_path)
        started.append(running)
        try:
            wait_for_http(f"{running.url}/-/ready", 30, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{log_path.read_text()[-2000:]}") from None
        return running

    yield start
    for running in started:
        stop_process(running.process)
