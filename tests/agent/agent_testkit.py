"""Shared helpers of the agent tests (imported by name: tests run with --import-mode=importlib)."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agent"

UID_GUARANTEED = "0b7a3c5e-2f41-4d8a-9c6b-1e2f3a4b5c6d"
UID_BURSTABLE = "8f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
UID_STATIC_BESTEFFORT = "5b2d6b0f1c1d5e8f9b3a4c2d1e0f9a8b"  # static pods have hash uids

CGROUP_TREES = [
    "v2-systemd-containerd",
    "v2-cgroupfs-crio",
    "v1-systemd-docker",
    "v1-cgroupfs-containerd",
]


class FakeClock:
    """Wall and monotonic clocks that only move when told to."""

    def __init__(self, wall: float = 1_764_072_000.0) -> None:
        self.wall = wall
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class Sink:
    """A stand-in collector endpoint: refuses, hangs or rejects on demand; records what it took."""

    def __init__(self) -> None:
        import asyncio

        self.mode = "accept"  # accept | unavailable | hang | unauthorized
        self.reject_node: str | None = None  # 400 for any batch holding a report of this node
        self.token: str | None = None  # when set, other bearer tokens are refused ...
        self.refusal = 401  # ... with this status
        self.accepted: list[dict] = []
        self.batches: list[list[int]] = []  # seqs of each accepted batch
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self.hanging = 0
        self.release = asyncio.Event()

    def app(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/api/v1/reports", self.handle)
        return app

    async def handle(self, request):
        import orjson
        from aiohttp import web

        self.requests += 1
        self.headers.append(dict(request.headers))
        body = await request.read()  # aiohttp decodes Content-Encoding: gzip, as the collector
        if self.mode == "hang":
            self.hanging += 1
            await self.release.wait()
            return web.json_response({"error": "released"}, status=503)
        if self.mode == "unavailable":
            return web.json_response({"error": "starting up"}, status=503)
        if self.mode == "unauthorized":
            return web.json_response({"error": "invalid bearer token"}, status=401)
        authorization = request.headers.get("Authorization")
        if self.token is not None and authorization != f"Bearer {self.token}":
            return web.json_response({"error": "wrong bearer token"}, status=self.refusal)
        reports = orjson.loads(body)["reports"]
        for index, report in enumerate(reports):
            if report.get("node") == self.reject_node:
                return web.json_response(
                    {"error": f"reports[{index}].node: {report['node']!r} is rejected"}, status=400
                )
        self.accepted.extend(reports)
        self.batches.append([report["seq"] for report in reports])
        return web.json_response({"accepted": len(reports), "duplicates": 0})


async def until(predicate, timeout_seconds: float = 30.0, step_seconds: float = 0.01) -> None:
    """Wait for a condition; the generous timeout only stops a broken test from hanging."""
    import asyncio

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110  # the predicates read other objects' state
            await asyncio.sleep(step_seconds)

    await asyncio.wait_for(poll(), timeout_seconds)


def full_rescan(cgroup_root: Path):
    """Containers per pod as a listing of every directory finds them, with nothing remembered."""
    import os

    from agent.sources.density import Density, app_containers
    from agent.sources.kubepods import count_container_names, find_kubepods, list_pod_cgroups

    location = find_kubepods(cgroup_root)
    return Density(
        {
            pod.uid: app_containers(count_container_names(os.listdir(pod.path)))
            for pod in list_pod_cgroups(location.path)
        }
    )


class PodSources:
    """The two pod sources sharing one listing, read once per (fake) second as the sampler does."""

    def __init__(self, cgroup_root: Path, watch, listed: list[str] | None = None) -> None:
        import os

        from agent.sources.density import DensitySource
        from agent.sources.pod_cpu import PodCpuSource
        from agent.sources.pod_listing import PodListing

        self.cgroup_root = cgroup_root
        self.now = 100.0

        def list_directory(path: str) -> list[str]:
            if listed is not None:
                listed.append(path)
            return os.listdir(path)

        self.listing = PodListing(
            cgroup_root, monotonic=lambda: self.now, watch=watch, list_directory=list_directory
        )
        self.pod_cpu = PodCpuSource(listing=self.listing)
        self.density = DensitySource(listing=self.listing)

    def cycle(self):
        self.now += 1.0
        return self.pod_cpu.sample(), self.density.sample()

    def assert_equal_to_a_full_rescan(self):
        usage, density = self.cycle()
        expected = full_rescan(self.cgroup_root)
        assert density == expected
        assert set(usage) == set(expected.containers_by_pod)
        return density
