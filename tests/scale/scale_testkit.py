"""Real processes for the scale and fault tests and for bench/soak.py.

Collectors run as `python -m collector` subprocesses and Prometheus as the real
/usr/bin/prometheus, both told to listen on port 0 (loopback): the kernel picks a
free port and psutil reads it back from the process's listening socket, so there is
no window in which another test could take the port first.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import yaml
from aiohttp import web

from collector.simulate import SimulatedFleet
from kubecarbon.wire import REPORTS_PATH

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def listening_port(pid: int, process: subprocess.Popen[bytes], timeout_seconds: float) -> int:
    """The TCP port the process listens on, once it does (it was started with port 0)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pid {pid} exited with {process.returncode} before listening")
        ports = [
            conn.laddr.port
            for conn in psutil.Process(pid).net_connections("inet")
            if conn.status == psutil.CONN_LISTEN
        ]
        if ports:
            return int(ports[0])
        time.sleep(0.05)
    raise TimeoutError(f"pid {pid} did not listen within {timeout_seconds} s")


def wait_for_http(url: str, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_seconds} s")
        time.sleep(0.05)


def fleet_profiles(fleet: SimulatedFleet) -> dict[str, Any]:
    """Config-file profiles that give every simulated node its provider, type and region.

    A collector subprocess has no Kubernetes API to ask, so the config file says what
    the simulated node labels would have said.
    """
    return {
        "profiles": [
            {
                "match": {"node": node.name},
                "provider": node.machine.provider,
                "instance_type": node.machine.instance_type,
                "region": node.region,
            }
            for node in fleet.nodes
        ]
    }


class CollectorProcess:
    """`python -m collector` on 127.0.0.1 with a kernel-chosen port; restartable."""

    def __init__(self, workdir: Path, args: Sequence[str] = (),
                 config: Mapping[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        if config is not None:
            config_path = workdir / "collector.yaml"
            config_path.write_text(yaml.safe_dump(dict(config)))
            self.args += ["--config", str(config_path)]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_seconds: float = 60.0) -> CollectorProcess:
        self.starts += 1
        log_path = self.workdir / f"collector-{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECARBON_")}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector", "--listen", "127.0.0.1:0",
                 "--kubernetes", "off", "--log-level", "warning", *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
            )
        try:
            self.port = listening_port(self.process.pid, self.process, timeout_seconds)
            wait_for_http(f"{self.url}/healthz", timeout_seconds)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{log_path.read_text()[-3000:]}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, no last snapshot is written."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, grace_seconds: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=30) as response:
            return response.read().decode()


class PrometheusProcess:
    """The real Prometheus with its own config and TSDB dir; can be stopped and restarted."""

    def __init__(self, workdir: Path, jobs: Mapping[str, Sequence[str]],
                 scrape_interval_seconds: float = 1.0) -> None:
        if not Path(PROMETHEUS).exists():
            raise RuntimeError("prometheus is not installed: run `make apt-deps`")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        interval = f"{round(scrape_interval_seconds * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in jobs.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 60.0) -> PrometheusProcess:
        self.starts += 1
        log_path = self.workdir / f"prometheus-{self.starts}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 "--web.listen-address=127.0.0.1:0", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            )
        try:
            self.port = listening_port(self.process.pid, self.process, timeout_seconds)
            wait_for_http(f"{self.url}/-/ready", timeout_seconds)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{log_path.read_text()[-3000:]}") from None
        return self

    def stop(self, grace_seconds: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Prometheus closes its TSDB head cleanly
        try:
            self.process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            document = json.loads(response.read())
        if document.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {document}")
        return list(document["data"]["result"])

    def scalar_by(self, expr: str, label: str) -> dict[str, float]:
        """{value of `label`: sample value} of an instant vector query."""
        return {row["metric"].get(label, ""): float(row["value"][1]) for row in self.query(expr)}

    def scrapes(self, job: str) -> int:
        """Successful scrapes of every target of the job, in the last hour."""
        rows = self.query(f'sum(sum_over_time(up{{job="{job}"}}[1h]))')
        return int(float(rows[0]["value"][1])) if rows else 0

    def wait_for_scrapes(self, job: str, count: int, timeout_seconds: float = 60.0) -> None:
        """Until `count` more successful scrapes of the job than now have happened."""
        target = self.scrapes(job) + count
        deadline = time.monotonic() + timeout_seconds
        while self.scrapes(job) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus did not scrape job {job} {count} more times")
            time.sleep(0.2)


def by_agent(body: bytes, upstreams: int) -> int:
    """Session affinity: every request of an agent goes to the same upstream."""
    agent_id = orjson.loads(body)["reports"][0]["agent_id"]
    return zlib.crc32(agent_id.encode()) % upstreams


class RoundRobinProxy:
    """A tiny reverse proxy for POST /api/v1/reports: request i goes to upstream i mod n.

    Stands in for a Kubernetes Service in front of collector replicas (kube-proxy
    spreads connections; this spreads every request, the harder case). With
    `route=by_agent` it behaves like a Service with sessionAffinity: ClientIP instead
    (each agent is one pod IP). An upstream that cannot be reached answers 502, which
    agents retry.
    """

    def __init__(self, upstreams: Sequence[str],
                 route: Callable[[bytes, int], int] | None = None) -> None:
        self.upstreams = list(upstreams)
        self.route = route
        self._next = itertools.count()
        self.forwarded: list[int] = [0] * len(self.upstreams)
        self.unreachable = 0  # requests answered 502 because the upstream could not be reached
        self.delivered: list[tuple[str, int]] = []  # (agent_id, seq) of reports answered 200
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_post(REPORTS_PATH, self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def _forward(self, request: web.Request) -> web.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        body = await request.read()
        index = (self.route(body, len(self.upstreams)) if self.route is not None
                 else next(self._next) % len(self.upstreams))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "content-encoding", "authorization")}
        try:
            async with self._session.post(self.upstreams[index] + REPORTS_PATH, data=body,
                                          headers=headers) as upstream:
                payload = await upstream.read()
                status = upstream.status
                content_type = upstream.headers.get("Content-Type", "application/json")
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.unreachable += 1
            return web.json_response({"error": f"upstream: {exc}"}, status=502)
        self.forwarded[index] += 1
        if status == 200 and "gzip" not in request.headers.get("Content-Encoding", ""):
            self.delivered += [(r["agent_id"], r["seq"]) for r in orjson.loads(body)["reports"]]
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


# --- reading expositions ---------------------------------------------------------------


def exposition_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} via prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in exposition_samples(text).items()
               if sample == name and wanted <= set(sample_labels))


# The fleet totals every fault test compares (counters and the untyped avoided totals).
FLEET_TOTALS = (
    ("kubecarbon_node_energy_joules_total", {}),
    ("kubecarbon_node_co2e_grams_total", {}),
    ("kubecarbon_node_embodied_co2e_grams_total", {}),
    ("kubecarbon_baseline_energy_joules_total", {}),
    ("kubecarbon_avoided_energy_joules_total", {}),
    ("kubecarbon_avoided_co2e_grams_total", {"scope": "operational"}),
    ("kubecarbon_avoided_co2e_grams_total", {"scope": "embodied"}),
)


def fleet_totals(text: str) -> dict[str, float]:
    return {name + "".join(f"{{{v}}}" for v in labels.values()): total(text, name, **labels)
            for name, labels in FLEET_TOTALS}


# --- a node the real agent samples ----------------------------------------------------

AGENT_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agent"
USER_HZ = 100


class FixtureHost:
    """A copy of a fixture node's /proc and /sys whose CPU tick counters the test advances.

    The files keep the kernel's format (they were copied from real nodes); only the
    aggregate `cpu` line's user and idle ticks move, as they would on a busy node.
    """

    def __init__(self, root: Path, tree: str = "v2-systemd-containerd") -> None:
        shutil.copytree(AGENT_FIXTURES / tree, root)
        self.proc = root / "proc"
        self.sys = root / "sys"
        stat = (self.proc / "stat").read_text().splitlines()
        self.logical_cpus = sum(1 for line in stat if line.startswith("cpu") and line[3].isdigit())

    def run(self, seconds: float, busy_ratio: float) -> None:
        """Account `seconds` of wall time at `busy_ratio` of all CPUs in /proc/stat."""
        path = self.proc / "stat"
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("cpu "):
                label, *ticks = line.split()
                all_ticks = round(seconds * self.logical_cpus * USER_HZ)
                busy = round(all_ticks * busy_ratio)
                ticks[0] = str(int(ticks[0]) + busy)  # user
                ticks[3] = str(int(ticks[3]) + all_ticks - busy)  # idle
                lines[i] = " ".join([label, "", *ticks])
        path.write_text("\n".join(lines) + "\n")


class SteppedClock:
    """Wall and monotonic clocks for the agent's sampler that move only when told to."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


async def until(predicate: Any, timeout_seconds: float = 30.0, what: str = "condition") -> None:
    """Poll `predicate` (cheap, in-process state) until true; the timeout only stops a hang."""
    import asyncio

    deadline = time.monotonic() + timeout_seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_seconds} s")
        await asyncio.sleep(0.01)
