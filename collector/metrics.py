"""The collector's metric catalogue: every kubecarbon_* family it serves, and its reference.

`CATALOGUE` is the one list of names, types, units, labels and help texts;
collector/exposition.py renders /metrics from it and docs/metrics.md is generated
from it (`python -m collector.metrics > docs/metrics.md`). Tests check both the
file and the live exposition against it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kubecarbon.metrics_table import MetricRow, metrics_table

PREFIX = "kubecarbon_"
NODE_LABELS = ("node", "region", "instance_type", "power_source")
WORKLOAD_LABELS = ("namespace", "workload_kind", "workload")
POD_LABELS = ("namespace", "pod")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family as documented and exposed."""

    name: str  # without the kubecarbon_ prefix; counters end in _total
    kind: str  # counter, gauge or untyped
    unit: str
    labels: tuple[str, ...]
    help: str
    note: str = ""  # extra detail for the docs only

    @property
    def full_name(self) -> str:
        return PREFIX + self.name


def _spec(name: str, kind: str, unit: str, labels: tuple[str, ...], help_: str,
          note: str = "") -> MetricSpec:
    return MetricSpec(name, kind, unit, labels, help_, note)


G, C, U = "gauge", "counter", "untyped"
CATALOGUE: tuple[MetricSpec, ...] = (
    # per node: latest window of live nodes (gauges) and totals (counters)
    _spec("node_cpu_usage_ratio", G, "ratio", NODE_LABELS,
          "Busy share of the node's logical CPUs in its latest window (0..1)."),
    _spec("node_logical_cpus", G, "CPUs", NODE_LABELS, "Logical CPUs of the node."),
    _spec("node_pods", G, "pods", NODE_LABELS, "Pods the node reported in its latest window.",
          "Absent for a node whose agent sends no pods section (a host outside Kubernetes)."),
    _spec("node_containers", G, "containers", NODE_LABELS,
          "Running containers on the node in its latest window.",
          "Absent when the agent does not report containers_running."),
    _spec("node_power_watts", G, "watts", NODE_LABELS,
          "Estimated IT power of the node, average over its latest window."),
    _spec("node_pue", G, "ratio", NODE_LABELS,
          "Power usage effectiveness applied to the node (facility energy / IT energy).",
          "kubecarbon report multiplies each node's IT energy by it for facility energy."),
    _spec("node_last_report_timestamp_seconds", G, "seconds", NODE_LABELS,
          "Collector time (unix) when the node's latest report was applied.",
          "Judged by the collector's clock, not the agent's; nodes silent longer than "
          "--stale-after leave every node gauge and fleet gauge."),
    _spec("node_last_window_end_timestamp_seconds", G, "seconds", NODE_LABELS,
          "End of the node's latest window: when its agent read the counters (unix, agent's "
          "clock).",
          "Minus node_last_report_timestamp_seconds: the delivery delay plus the agent's "
          "clock offset. The node's counters hold the CPU read up to this time."),
    _spec("node_energy_joules_total", C, "joules", NODE_LABELS,
          "Estimated IT energy of the node (before PUE)."),
    _spec("node_idle_energy_joules_total", C, "joules", NODE_LABELS,
          "Part of the node's IT energy drawn at 0 % CPU; stays with the node, never "
          "attributed to pods."),
    _spec("node_co2e_grams_total", C, "grams CO2e", NODE_LABELS,
          "Operational emissions of the node: IT energy * PUE * grid intensity."),
    _spec("node_embodied_co2e_grams_total", C, "grams CO2e", NODE_LABELS,
          "Embodied emissions of the node's hardware, amortised over its lifetime."),
    # attribution
    _spec("namespace_cpu_seconds_total", C, "CPU-seconds", ("namespace",),
          "CPU time of the namespace's pods; unknown pod uids count as namespace=\"unknown\"."),
    _spec("namespace_energy_joules_total", C, "joules", ("namespace",),
          "Dynamic IT energy attributed to the namespace by CPU share (idle power excluded)."),
    _spec("namespace_co2e_grams_total", C, "grams CO2e", ("namespace",),
          "Operational emissions of the namespace's attributed energy."),
    _spec("workload_cpu_seconds_total", C, "CPU-seconds", WORKLOAD_LABELS,
          "CPU time of the workload's pods (workload = top of the owner chain).",
          "At most --max-workload-series series; further workloads add to "
          "workload_kind=\"other\", workload=\"other\" of their namespace."),
    _spec("workload_energy_joules_total", C, "joules", WORKLOAD_LABELS,
          "Dynamic IT energy attributed to the workload by CPU share."),
    _spec("workload_co2e_grams_total", C, "grams CO2e", WORKLOAD_LABELS,
          "Operational emissions of the workload's attributed energy."),
    _spec("pod_cpu_seconds_total", C, "CPU-seconds", POD_LABELS,
          "CPU time of the pod (only with --per-pod-series true).",
          "Off by default (one series per pod); capped by --max-pod-series, beyond which "
          "pods add to pod=\"other\"."),
    _spec("pod_energy_joules_total", C, "joules", POD_LABELS,
          "Dynamic IT energy attributed to the pod (only with --per-pod-series true)."),
    _spec("pod_co2e_grams_total", C, "grams CO2e", POD_LABELS,
          "Operational emissions of the pod's energy (only with --per-pod-series true)."),
    # requested versus used capacity (collector/capacity.py), live nodes only
    _spec("node_allocatable_cpu_cores", G, "cores", NODE_LABELS,
          "CPU the scheduler may hand out to pods on the node (status.allocatable).",
          "The node's logical CPUs when the cluster does not say (no Kubernetes metadata)."),
    *(
        _spec(f"{scope}_{what}_cpu_cores", G, "cores", labels, f"{text} {where}", note)
        for scope, labels, where, note in (
            ("node", NODE_LABELS, "on the node, over the pods the watch knows.", ""),
            ("namespace", ("namespace",), "in the namespace, on live nodes.", ""),
            ("workload", WORKLOAD_LABELS, "of the workload, on live nodes.",
             "Capped as the workload counters: further workloads add to "
             "workload_kind=\"other\", workload=\"other\" of their namespace."),
        )
        for what, text in (
            ("requested", "Effective CPU requests of running pods (init containers and "
                          "overhead included)"),
            ("used", "CPU used by the pods in their nodes' latest windows"),
            ("idle_requested", "Requested but unused CPU, max(requested - used, 0) per "
                               "workload and node, summed,"),
        )
    ),
    # rightsizing (collector/rightsizing.py, collector/model/rightsizing.py)
    _spec("workload_rightsizing_history_seconds", G, "seconds", WORKLOAD_LABELS,
          "Usage history sampled for the workload's recommendation so far.",
          "A workload with less than --rightsizing-min-history has this series and no "
          "recommendation: not enough history."),
    _spec("workload_recommended_cpu_cores", G, "cores", WORKLOAD_LABELS,
          "Recommended CPU request of the workload, all pods together: the "
          "--rightsizing-percentile of its usage samples plus --rightsizing-headroom.",
          "Only for workloads with at least --rightsizing-min-history of samples."),
    _spec("workload_avoidable_co2e_grams_per_year", G, "grams CO2e per year",
          WORKLOAD_LABELS,
          "The workload's share (by requested cores it would free) of the fleet's median "
          "avoidable CO2e per year."),
    _spec("rightsizing_nodes", G, "nodes", ("requests",),
          "Nodes the live fleet's pods need when packed by their requests: "
          "requests=\"current\" or \"recommended\" (first fit decreasing on the real "
          "node sizes)."),
    _spec("rightsizing_avoidable_nodes", G, "nodes", (),
          "Nodes rightsizing would free: current minus recommended packing, never below 0."),
    _spec("rightsizing_avoidable_energy_joules_per_year", G, "joules per year", (),
          "Idle IT energy of the avoidable nodes over a year at today's rate."),
    _spec("rightsizing_avoidable_co2e_grams_per_year", U, "grams CO2e per year",
          ("quantile",),
          "Operational and embodied CO2e the avoidable nodes emit in a year, at quantiles "
          "0.05, 0.5, 0.95 of the parameter uncertainty (1,000 draws).",
          "Typed untyped for the quantile label, as avoided_co2e_grams_per_hour."),
    _spec("collector_rightsizing_untracked_workloads_total", C, "workloads", (),
          "Workload intervals not sampled because --rightsizing-max-workloads was reached."),
    # fleet and baseline
    _spec("fleet_cpu_usage_ratio", G, "ratio", (),
          "Busy logical CPUs / logical CPUs over the live nodes' latest windows."),
    _spec("baseline_servers", G, "servers", (),
          "Reference servers a dedicated, non-elastic deployment would run for the same "
          "CPU demand at the baseline utilisation."),
    _spec("actual_servers", G, "servers", (),
          "Logical CPUs of the live nodes in reference-server equivalents."),
    _spec("avoided_servers", G, "servers", (),
          "baseline_servers - actual_servers (negative: less efficient than the baseline)."),
    _spec("baseline_energy_joules_total", C, "joules", (),
          "IT energy the non-elastic baseline would have used for the reports applied."),
    _spec("avoided_energy_joules_total", U, "joules", (),
          "Baseline IT energy minus the fleet's IT energy, summed over reports.",
          "Typed untyped, not counter: a window less efficient than the baseline makes it "
          "go down, which Prometheus would take for a counter reset. Use delta() or "
          "differences over a range, not increase()/rate()."),
    _spec("avoided_co2e_grams_total", U, "grams CO2e", ("scope",),
          "Avoided emissions against the baseline: scope=\"operational\" (energy * PUE_b * "
          "grid intensity) or scope=\"embodied\" (servers not built).",
          "Untyped for the same reason as avoided_energy_joules_total: it can go down."),
    _spec("avoided_co2e_grams_per_hour", U, "grams CO2e per hour", ("quantile",),
          "Avoided emission rate of the live fleet (operational + embodied) at quantiles "
          "0.05, 0.5, 0.95 of the parameter uncertainty (1,000 draws).",
          "A gauge in meaning; typed untyped because the Prometheus lint reserves the "
          "quantile label for summaries, which this is not (no _sum or _count)."),
    _spec("avoided_co2e_grams_per_hour_draw", G, "grams CO2e per hour", ("draw",),
          "Avoided emission rate of this replica's live nodes in each of the 1,000 parameter "
          "draws behind avoided_co2e_grams_per_hour; only with --replicas > 1.",
          "Every replica draws the same parameters and each draw is a sum over nodes, so "
          "the fleet's band is the quantile over draws of the per-draw sum across replicas "
          "(the recording rule kubecarbon:avoided_co2e_tonnes_per_day:quantile); "
          "quantiles themselves do not add."),
    _spec("avoided_servers_quantile", U, "servers", ("quantile",),
          "Avoided servers of the live fleet at quantiles 0.05, 0.5, 0.95 of the parameter "
          "uncertainty (baseline utilisation and the reference server drawn from "
          "model_info's reference_servers; 1,000 draws).",
          "Typed untyped for the same reason as avoided_co2e_grams_per_hour."),
    _spec("grid_carbon_intensity_grams_per_kilowatt_hour", G, "grams CO2e per kWh",
          ("region",),
          "Grid carbon intensity applied to the live nodes of each region.",
          "Not in base units on purpose: g/kWh is how every source publishes it."),
    _spec("model_info", G, "info", ("preset", "reference_server", "reference_servers",
                                    "baseline_utilisation", "baseline_pue",
                                    "embodied_kilograms_per_server", "server_lifetime_years",
                                    "embodied_credit", "overhead_namespaces",
                                    "rapl_platform_factor", "memory_watts_per_gibibyte"),
          "Model assumptions in force; always 1.",
          "preset: default or conservative; reference_servers: the SPECpower results the "
          "band draws the reference from, comma-separated; embodied_credit: all_avoided "
          "or existing_servers_only; overhead_namespaces: left out of the baseline's demand."),
    _spec("model_uncertainty_info", G, "info", ("parameter", "low", "high"),
          "The range each uncertain assumption is drawn from (uniform), one series per "
          "parameter; always 1.",
          "kubecarbon report recomputes a period's band with these ranges."),
    _spec("build_info", G, "info", ("version",), "kubecarbon version; always 1."),
    # the collector itself
    _spec("collector_reports_total", C, "reports", ("result",),
          "Reports by outcome: accepted (applied), duplicate (already applied, "
          "acknowledged), rejected (requests refused).",
          "A rejected request counts once whatever it contained: an invalid body may not "
          "hold countable reports. It is the only series a rejected request moves, with "
          "collector_rejected_requests_total."),
    _spec("collector_rejected_requests_total", C, "requests", ("code",),
          "Requests to /api/v1/reports refused, by HTTP status code."),
    _spec("collector_forwarded_requests_total", C, "requests", ("result",),
          "Report requests this replica sent on to the replica owning their node: applied "
          "(the owner answered 200), refused (it answered otherwise), unavailable (not "
          "reached), untrusted (its certificate failed verification against --peer-ca-file "
          "and --peer-server-name); the last two give the agent a 503 and it retries; only "
          "with --replicas > 1."),
    _spec("collector_default_profile_nodes", G, "nodes", (),
          "Live nodes priced with the default profile (no known provider or curve)."),
    _spec("collector_default_profile_reports_total", C, "reports", (),
          "Reports priced with the default profile."),
    _spec("collector_live_nodes", G, "nodes", (), "Nodes that reported within --stale-after."),
    _spec("collector_stale_nodes", G, "nodes", (),
          "Nodes seen before but silent longer than --stale-after (out of gauges, "
          "counters kept)."),
    _spec("collector_forgotten_nodes_total", C, "nodes", ("reason",),
          "Nodes whose series were all dropped: reason=\"silent\" after --forget-after "
          "without a report, reason=\"cap\" as the least recently seen past --max-nodes.",
          "A steady rise of reason=\"cap\" means --max-nodes is below the fleet's size: "
          "nodes then lose their series between reports."),
    _spec("collector_series_capped_pod_rows_total", C, "pod rows", ("series",),
          "Pod rows added to an \"other\" series because a series cap was reached "
          "(series=\"workload\" or \"pod\")."),
    _spec("collector_dedupe_agents", G, "agents", (),
          "Agent ids remembered for (agent_id, seq) idempotency."),
    _spec("collector_dedupe_evictions_total", C, "agents", (),
          "Agent ids forgotten because --dedupe-max-agents was reached."),
    _spec("collector_snapshot_writes_total", C, "writes", ("result",),
          "State snapshot writes by result (success, failure)."),
    _spec("collector_snapshot_last_success_timestamp_seconds", G, "seconds", (),
          "Unix time of the last successful state snapshot (0: none yet)."),
    _spec("collector_snapshot_restore", G, "info", ("result",),
          "How the state was loaded at start: restored, missing, corrupt or disabled; "
          "the matching series is 1."),
    _spec("collector_metadata_synced", G, "bool", ("source",),
          "1 when the metadata provider (static or kubernetes) has a complete view."),
    _spec("collector_metadata_connected", G, "bool", ("source",),
          "1 when the metadata provider currently reaches its source."),
)
SPECS = {spec.name: spec for spec in CATALOGUE}


def metrics_doc() -> str:
    """docs/metrics.md, generated from CATALOGUE."""
    lines = [
        "# Metrics reference",
        "",
        "<!-- generated by `python -m collector.metrics > docs/metrics.md`; "
        "tests/collector/test_exposition.py fails when this file and the code disagree -->",
        "",
        "Every series the collector serves on `GET /metrics` (Prometheus text format 0.0.4).",
        "All names start with `kubecarbon_`; values are in base units (joules, watts, seconds, "
        "grams) except the grid intensity, which keeps the unit its sources publish.",
        "Node series carry `node`, `region`, `instance_type` and `power_source` "
        "(`cloud_linear`, `specpower_curve`, `default_profile` or `rapl`); `region` and "
        "`instance_type` are `unknown` when no profile says them.",
        "",
        "Gauges of a node, and every fleet gauge, come from the latest window of the nodes "
        "that reported within `--stale-after`; a silent node drops out of them, and its "
        "counters keep their totals. After a restart, counters resume from the state "
        "snapshot (`--state-file`).",
        "",
        "The process's own `process_*` and `python_*` metrics (prometheus_client) follow, and "
        "with the Kubernetes metadata provider its `kubecarbon_kubernetes_*` metrics "
        "(listed in docs/kubernetes.md).",
        "",
    ]
    lines += metrics_table(
        MetricRow(spec.full_name, spec.kind, spec.unit, spec.labels,
                  spec.help + (f" {spec.note}" if spec.note else ""))
        for spec in CATALOGUE
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(metrics_doc())
