"""The collector's load on the API server, counted by the server: one watch per resource.

200 pods are created and deleted in waves while each collector pod's LIST and WATCH
requests are counted twice: by the real kube-apiserver's audit log (api_audit.py) and
by the collector's own counters (`kubecarbon_kubernetes_list_requests_total` and
`..._watch_requests_total`, by reason). The pods never run: they name a scheduler
that does not exist, so no scheduler, kubelet or sandbox spends anything on them and
they load only the API server and its watchers, with one ADDED and one DELETED event
each. Then the API server is restarted: its new watch cache no longer has the
collector's resourceVersion, and the test shows the one relist per resource this
costs, counted under its reason, and that the retries while the server was down
followed the backoff. Each test prints its figures (docs/operations.md has a run's).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import release
from api_audit import ClientRequests, client_requests
from kube_objects import ready, running_pods, wait_for
from kubernetes import client
from node_cluster import LocalNodeCluster
from prometheus_client.parser import text_string_to_metric_families
from workloads import BUSYLOOP_IMAGE

from collector.kubernetes.reflector import LIST_REASONS, WATCH_REASONS, WatchSettings
from kubecarbon.backoff import Backoff

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PODS = 200
WAVES = 4
NAMESPACE = "default"  # nothing to create or remove but the pods
WAVE_LABEL = "kubecarbon-test/load-wave"
NO_SCHEDULER = "kubecarbon-test-no-such-scheduler"  # the pods stay Pending, unbound


@dataclass(frozen=True)
class Collector:
    """One collector pod: its address and the identity it talks to the API server with."""

    name: str
    ip: str
    metrics_url: str
    user: str


@dataclass
class CollectorCounters:
    lists: dict[tuple[str, str], float]  # (resource, reason) -> requests
    watches: dict[tuple[str, str], float]
    errors: dict[str, float]
    objects: dict[str, float]
    up: dict[str, float]

    def minus(self, before: CollectorCounters) -> CollectorCounters:
        def delta(now: dict, then: dict) -> dict:
            return {key: value - then.get(key, 0.0) for key, value in now.items()}
        return CollectorCounters(delta(self.lists, before.lists),
                                 delta(self.watches, before.watches),
                                 delta(self.errors, before.errors), self.objects, self.up)

    def by_reason(self, kind: str, resource: str) -> dict[str, int]:
        table, reasons = ((self.lists, LIST_REASONS) if kind == "list"
                          else (self.watches, WATCH_REASONS))
        return {reason: int(table[(resource, reason)]) for reason in reasons}


def scrape(collector: Collector) -> CollectorCounters:
    with urllib.request.urlopen(collector.metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    found = CollectorCounters({}, {}, {}, {}, {})
    tables = {
        "kubecarbon_kubernetes_list_requests_total": found.lists,
        "kubecarbon_kubernetes_watch_requests_total": found.watches,
    }
    per_resource = {
        "kubecarbon_kubernetes_watch_errors_total": found.errors,
        "kubecarbon_kubernetes_objects": found.objects,
        "kubecarbon_kubernetes_watch_up": found.up,
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in tables:
                tables[sample.name][(sample.labels["resource"], sample.labels["reason"])] = (
                    sample.value)
            elif sample.name in per_resource:
                per_resource[sample.name][sample.labels["resource"]] = sample.value
    assert found.lists and found.watches, f"no request counters at {collector.metrics_url}"
    return found


def watched(counters: CollectorCounters) -> tuple[str, ...]:
    """The resources the collector watches: one reflector, one `watch_up` series each."""
    resources = tuple(sorted(counters.up))
    assert {"nodes", "pods"} <= set(resources), resources
    return resources


def collectors(core: client.CoreV1Api) -> list[Collector]:
    found = []
    for pod in running_pods(core, release.NAMESPACE):
        if pod.metadata.labels.get("app.kubernetes.io/component") != "collector":
            continue
        if not ready(pod) or pod.metadata.deletion_timestamp is not None:
            continue
        (port,) = [p.container_port for c in pod.spec.containers for p in c.ports or ()
                   if p.name == "http"]
        user = f"system:serviceaccount:{release.NAMESPACE}:{pod.spec.service_account_name}"
        found.append(Collector(pod.metadata.name, pod.status.pod_ip,
                               f"http://{pod.status.pod_ip}:{port}/metrics", user))
    assert found, "no Ready collector pod"
    return found


@pytest.fixture
def local(cluster: object, kubecarbon: object) -> LocalNodeCluster:
    if not isinstance(cluster, LocalNodeCluster):
        pytest.skip("needs the suite's own API server: its audit log, and a restart")
    return cluster


def audited(cluster: LocalNodeCluster, collector: Collector) -> ClientRequests:
    return client_requests(cluster.audit_log, collector.user, collector.ip,
                           cluster.started_at("kube-apiserver"))


def pod_manifest(wave: int, index: int) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"load-{wave}-{index:03d}",
                                     labels={WAVE_LABEL: str(wave)}),
        spec=client.V1PodSpec(
            scheduler_name=NO_SCHEDULER, automount_service_account_token=False,
            containers=[client.V1Container(name="idle", image=BUSYLOOP_IMAGE)]))


def api_pod_count(core: client.CoreV1Api) -> int:
    return len(core.list_pod_for_all_namespaces().items)


def view_matches_api(core: client.CoreV1Api, collector: Collector) -> Callable[[], bool]:
    """True once the collector knows as many pods as the API server has (one read each)."""
    def check() -> bool:
        return scrape(collector).objects["pods"] == api_pod_count(core)
    return check


def reasons_text(counts: dict[str, int]) -> str:
    return " ".join(f"{reason}={n}" for reason, n in counts.items() if n) or "none"


@dataclass
class Measured:
    """One collector's requests since `before`: the server's view and the collector's."""

    audit: ClientRequests
    audit_before: ClientRequests
    counters: CollectorCounters
    change: CollectorCounters

    def new(self, verb: str, resource: str) -> int:
        return self.audit.count(verb, resource) - self.audit_before.count(verb, resource)

    def table(self, title: str, resources: tuple[str, ...], counters: CollectorCounters) -> str:
        """`title`, then a row per resource: the server's counts (total, +new), the open
        watches, and `counters` (the collector's totals or changes) by reason."""
        header = ("resource", "API LISTs", "API WATCHes", "open watches", "collector lists",
                  "collector watches")
        rows = [header] + [(
            resource,
            f"{self.audit.count('list', resource)} (+{self.new('list', resource)})",
            f"{self.audit.count('watch', resource)} (+{self.new('watch', resource)})",
            str(self.audit.open_watches[resource]),
            reasons_text(counters.by_reason("list", resource)),
            reasons_text(counters.by_reason("watch", resource)),
        ) for resource in resources]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        return "\n".join([title] + ["  ".join(cell.ljust(w) for cell, w in
                                              zip(row, widths, strict=True)) for row in rows])


def measure(local: LocalNodeCluster, c: Collector,
            before: tuple[CollectorCounters, ClientRequests]) -> Measured:
    counters_before, audit_before = before
    counters = scrape(c)
    return Measured(audited(local, c), audit_before, counters, counters.minus(counters_before))


def test_200_pods_created_and_deleted_ride_one_watch_per_resource(local, core):
    watching = collectors(core)
    before = {c.name: (scrape(c), audited(local, c)) for c in watching}
    resources = watched(before[watching[0].name][0])
    baseline_pods = {c.name: counters.objects["pods"] for c, (counters, _) in
                     zip(watching, before.values(), strict=True)}
    open_watches_seen: dict[str, list[dict[str, int]]] = {c.name: [] for c in watching}

    def sample_open_watches() -> None:
        for c in watching:
            open_watches_seen[c.name].append(dict(audited(local, c).open_watches))

    per_wave = PODS // WAVES
    try:
        for wave in range(WAVES):
            for index in range(per_wave):
                core.create_namespaced_pod(NAMESPACE, pod_manifest(wave, index))
            sample_open_watches()
        for c in watching:
            wait_for(f"{c.name} to know the {PODS} new pods", view_matches_api(core, c),
                     explain=lambda c=c: f"collector {scrape(c).objects}, API "
                                         f"{api_pod_count(core)}")
        peak = {c.name: scrape(c).objects["pods"] for c in watching}
    finally:
        for wave in range(WAVES):
            core.delete_collection_namespaced_pod(
                NAMESPACE, label_selector=f"{WAVE_LABEL}={wave}", grace_period_seconds=0)
            sample_open_watches()
    wait_for("the load pods gone from the API", lambda: not core.list_namespaced_pod(
        NAMESPACE, label_selector=WAVE_LABEL).items)
    for c in watching:
        wait_for(f"{c.name} to forget them", view_matches_api(core, c),
                 explain=lambda c=c: f"collector {scrape(c).objects}, API {api_pod_count(core)}")

    for c in watching:
        measured = measure(local, c, before[c.name])
        audit, counters, change = measured.audit, measured.counters, measured.change
        print(measured.table(
            f"{c.name}: {PODS} pods created and deleted in {WAVES} waves; collector's pods "
            f"{baseline_pods[c.name]:.0f} -> {peak[c.name]:.0f} -> "
            f"{counters.objects['pods']:.0f}; open watches sampled "
            f"{len(open_watches_seen[c.name])} times: {open_watches_seen[c.name]}",
            resources, counters))

        for resource in resources:
            # the server saw no new LIST from this collector, and the collector sent none
            assert measured.new("list", resource) == 0, resource
            assert set(change.by_reason("list", resource).values()) == {0}, resource
            # nor a new WATCH, but for the renewal of one that ran its 5-10 minutes
            # meanwhile, which both count
            watches = change.by_reason("watch", resource)
            assert watches["listed"] == watches["retry"] == 0, resource
            assert watches["ended"] <= 1, resource  # the test takes less than 5 minutes
            assert measured.new("watch", resource) == watches["ended"], resource
            assert change.errors[resource] == 0, resource
        # one watch per resource open the whole time, as the server counts them
        expected_open = dict.fromkeys(resources, 1)
        for sample in open_watches_seen[c.name] + [dict(audit.open_watches)]:
            assert sample == expected_open
        # every request the server ever had from this pod is one the collector counted
        for resource in resources:
            assert audit.count("list", resource) <= sum(
                counters.by_reason("list", resource).values())
            assert audit.count("watch", resource) <= sum(
                counters.by_reason("watch", resource).values())
        # its view is the API's again: no deleted pod left in its table
        assert counters.objects["pods"] == api_pod_count(core)


def most_requests_in(seconds: float, settings: WatchSettings) -> int:
    """The most requests a reflector retrying with its backoff can send in `seconds`:
    the first at once, then one after each delay, every delay at least half its ceiling."""
    ceilings = Backoff(settings.initial_backoff_seconds, settings.max_backoff_seconds,
                       jitter=0.0)
    sent, elapsed = 1, 0.0
    while True:
        elapsed += ceilings.next_delay_seconds() / 2
        if elapsed > seconds:
            return sent
        sent += 1


def test_an_api_server_restart_costs_one_list_per_resource_counted_as_expired(local, core):
    watching = collectors(core)
    before = {c.name: (scrape(c), audited(local, c)) for c in watching}
    resources = watched(before[watching[0].name][0])
    # Any write after the collector's last event makes its resourceVersion older than
    # the restarted server's watch cache (the nodes' leases do it every 10 s; this
    # makes it certain).
    core.create_namespaced_config_map(NAMESPACE, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="kubecarbon-test-load-marker")))
    core.delete_namespaced_config_map("kubecarbon-test-load-marker", NAMESPACE)

    began = time.monotonic()
    local.restart("kube-apiserver")
    down_seconds = time.monotonic() - began

    def relisted_and_watching(c: Collector) -> Callable[[], bool]:
        def check() -> bool:
            counters = scrape(c)
            change = counters.minus(before[c.name][0])
            return all(change.by_reason("list", r)["expired"] >= 1 and counters.up[r] == 1
                       and change.by_reason("watch", r)["listed"] >= 1 for r in resources)
        return check

    for c in watching:
        wait_for(f"{c.name} to relist and watch again", relisted_and_watching(c),
                 explain=lambda c=c: str(scrape(c).minus(before[c.name][0])))
    back_seconds = time.monotonic() - began
    for c in watching:
        wait_for(f"{c.name}'s view to match the API", view_matches_api(core, c))

    settings = WatchSettings()
    bound = most_requests_in(back_seconds, settings)
    for c in watching:
        measured = measure(local, c, before[c.name])
        audit, change = measured.audit, measured.change
        print(measured.table(
            f"{c.name}: API server restarted (down {down_seconds:.1f} s, collector watching "
            f"again after {back_seconds:.1f} s); the collector's changes; watch errors "
            f"{ {r: int(change.errors[r]) for r in resources} }; "
            f"API answers {dict(audit.codes - measured.audit_before.codes)}",
            resources, change))

        for resource in resources:
            lists = change.by_reason("list", resource)
            watches = change.by_reason("watch", resource)
            # exactly one relist, for the reason 410 Gone, in one page
            assert lists == {"initial": 0, "expired": 1, "retry": 0}, resource
            assert measured.new("list", resource) == 1, resource
            # the watch was reopened once after that list; the retries before it, while
            # the server was away, are failed requests spaced by the backoff
            assert watches["listed"] == 1, resource
            assert watches["retry"] <= change.errors[resource], resource
            assert watches["retry"] + watches["ended"] <= bound, (resource, bound)
            # the server saw the expired watch and the new one, never more than were sent
            assert 2 <= measured.new("watch", resource) <= sum(watches.values()), resource
        # one watch per resource open again
        assert dict(audit.open_watches) == dict.fromkeys(resources, 1)
