"""kubecarbon's Grafana dashboards, written as code.

    .venv/bin/python dashboards/generate.py          # rewrite both copies of every dashboard
    .venv/bin/python dashboards/generate.py --check  # exit 1 and name stale files instead

Code, not hand-edited JSON, so every panel gets the datasource variable, a unit and
a description the same way. The JSON files are written twice: dashboards/ for
importing by hand, helm/kubecarbon/files/dashboards/ for the chart's ConfigMaps
(Helm cannot read files outside the chart). tests/deploy/test_dashboards.py fails
when either copy is stale. Queries use the recording rules of
helm/kubecarbon/files/prometheus/rules.yaml where one exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIRS = (REPO_ROOT / "dashboards", REPO_ROOT / "helm" / "kubecarbon" / "files" / "dashboards")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24

# Grafana unit ids, named for what they show.
TONNES = "masst"
KILOGRAMS = "masskg"
GRAMS = "massg"
KILOWATT_HOURS = "kwatth"
WATTS = "watt"
RATIO = "percentunit"
COUNT = "none"
SECONDS = "s"
GRID_INTENSITY = "suffix: gCO2e/kWh"
CPUS = "suffix: CPUs"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    """One panel; width and height are in Grafana grid units (24 columns)."""

    title: str
    description: str
    kind: str  # "stat", "timeseries", "bargauge" or "table"
    unit: str
    queries: list[Query]
    width: int = 12
    height: int = 8
    decimals: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)


def _target(ref_id: str, query: Query, kind: str) -> dict[str, Any]:
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        # A table shows one row per series with its labels as columns.
        "format": "table" if kind == "table" else "time_series",
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["custom"] = {"fillOpacity": 10, "lineWidth": 2, "showPoints": "never"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [_target(chr(ord("A") + i), q, panel.kind)
                    for i, q in enumerate(panel.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": panel.overrides},
        "options": panel.options,
    }


def _layout(panels: list[Panel]) -> list[dict[str, Any]]:
    """Left to right, wrapping at 24 columns; a row is as tall as its tallest panel."""
    laid_out, x, y, row_height = [], 0, 0, 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return laid_out


def _datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def _query_variable(name: str, label: str, query: str, *, include_all: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": include_all,
        "includeAll": include_all,
        "allValue": ".*" if include_all else None,
        "current": {},
        "hide": 0,
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel],
    variables: list[dict[str, Any]], time_from: str,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["kubecarbon", "carbon", "energy"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [_datasource_variable(), *variables]},
        "links": [
            {"title": "kubecarbon", "type": "dashboards", "tags": ["kubecarbon"],
             "asDropdown": True}
        ],
        "panels": _layout(panels),
    }


def _band(low_ref: str, high_ref: str) -> list[dict[str, Any]]:
    """Shade between the p05 and p95 series (Grafana's fill-below-to override)."""
    return [
        {
            "matcher": {"id": "byName", "options": high_ref},
            "properties": [{"id": "custom.fillBelowTo", "value": low_ref},
                           {"id": "custom.fillOpacity", "value": 20},
                           {"id": "custom.lineWidth", "value": 0}],
        },
        {
            "matcher": {"id": "byName", "options": low_ref},
            "properties": [{"id": "custom.lineWidth", "value": 0},
                           {"id": "custom.fillOpacity", "value": 0}],
        },
    ]


STAT_OPTIONS = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "none", "textMode": "value_and_name"}
AVOIDED_TOTAL = "sum(kubecarbon_avoided_co2e_grams_total)"
QUANTILE = 'kubecarbon:avoided_co2e_tonnes_per_day:quantile{{quantile="{q}"}}'


def _period_band(days: int, label: str) -> list[Query]:
    """Avoided tonnes over the last `days`, with the p05-p95 band of the same period."""
    scale = f" * {days}" if days != 1 else ""  # tonnes per day times days
    return [
        Query(f"sum(delta(kubecarbon_avoided_co2e_grams_total[{days}d])) / 1e6", "estimate"),
        *(
            Query(f"avg_over_time({QUANTILE.format(q=q)}[{days}d]){scale}", f"{name} {label}")
            for q, name in (("0.05", "p05"), ("0.95", "p95"))
        ),
    ]


def _since_install_band() -> list[Query]:
    # Counters carry no band; the current p05/p50 and p95/p50 ratios scale the total
    # (parameter uncertainty is multiplicative to first order).
    ratio = "scalar(sum({q})) / scalar(sum({m}))"
    median = QUANTILE.format(q="0.5")
    return [
        Query(f"{AVOIDED_TOTAL} / 1e6", "estimate"),
        Query(f"{AVOIDED_TOTAL} / 1e6 * {ratio.format(q=QUANTILE.format(q='0.05'), m=median)}",
              "p05"),
        Query(f"{AVOIDED_TOTAL} / 1e6 * {ratio.format(q=QUANTILE.format(q='0.95'), m=median)}",
              "p95"),
    ]


def fleet_overview() -> dict[str, Any]:
    panels = [
        Panel("Avoided servers now",
              "Dedicated servers the same work would need at the baseline utilisation, minus the "
              "server-equivalents the fleet uses now (kubecarbon_avoided_servers, summed over "
              "collectors).",
              "stat", COUNT, [Query("kubecarbon:avoided_servers:sum", "avoided servers")],
              width=6, height=5, decimals=0, options=STAT_OPTIONS),
        Panel("Avoided tCO2e, last 24 h",
              "Avoided operational and embodied CO2e over the last day in tonnes, with the p05 and "
              "p95 of the model's parameter uncertainty (kubecarbon_avoided_co2e_grams_per_hour).",
              "stat", TONNES, _period_band(1, "24 h"), width=6, height=5, decimals=2,
              options=STAT_OPTIONS),
        Panel("Avoided tCO2e, last 30 days",
              "Avoided CO2e over the last 30 days in tonnes, with the p05-p95 band of the same "
              "period.",
              "stat", TONNES, _period_band(30, "30 d"), width=6, height=5, decimals=1,
              options=STAT_OPTIONS),
        Panel("Avoided tCO2e since install",
              "The collectors' avoided CO2e counters (restored from their snapshots after "
              "restarts) in tonnes. p05/p95 scale the total by today's band ratios.",
              "stat", TONNES, _since_install_band(), width=6, height=5, decimals=1,
              options=STAT_OPTIONS),
        Panel("Servers: baseline, actual, avoided",
              "Baseline: dedicated servers at the traditional utilisation. Actual: the fleet's "
              "logical CPUs in reference-server equivalents. Avoided: the difference.",
              "timeseries", COUNT,
              [Query("kubecarbon:baseline_servers:sum", "baseline"),
               Query("kubecarbon:actual_servers:sum", "actual"),
               Query("kubecarbon:avoided_servers:sum", "avoided")],
              decimals=0),
        Panel("Avoided tCO2e per day, p05-p95",
              "The avoided CO2e rate in tonnes per day: the totals' change over the last hour "
              "and the model's "
              "uncertainty band (shaded between p05 and p95).",
              "timeseries", TONNES,
              [Query("kubecarbon:avoided_co2e_tonnes_per_day:delta1h", "estimate (last hour)"),
               Query(QUANTILE.format(q="0.05"), "p05"),
               Query(QUANTILE.format(q="0.5"), "p50"),
               Query(QUANTILE.format(q="0.95"), "p95")],
              decimals=2, overrides=_band("p05", "p95")),
        Panel("IT power: actual vs baseline",
              "Average IT power of the fleet (node energy counters) against what the dedicated "
              "baseline fleet would draw for the same work, in watts, before PUE.",
              "timeseries", WATTS,
              [Query("kubecarbon:fleet_power_watts:rate5m", "actual"),
               Query("kubecarbon:baseline_power_watts:rate5m", "baseline")]),
        Panel("IT energy per hour: actual vs baseline",
              "IT energy used in each hour by the fleet and by the baseline fleet, in kWh.",
              "timeseries", KILOWATT_HOURS,
              [Query("sum(increase(kubecarbon_node_energy_joules_total[1h])) / 3.6e6", "actual"),
               Query("sum(increase(kubecarbon_baseline_energy_joules_total[1h])) / 3.6e6",
                     "baseline")],
              decimals=1),
        Panel("Fleet CPU utilisation vs baseline",
              "Busy logical CPUs over all logical CPUs of the fleet, against the baseline's "
              "traditional utilisation (u_b, recovered from the model's server counts).",
              "timeseries", RATIO,
              [Query("kubecarbon:fleet_cpu_usage:ratio", "fleet"),
               Query("kubecarbon:baseline_cpu_usage:ratio", "baseline")],
              decimals=1),
        Panel("Pods and containers per node",
              "Average and largest number of pods and running containers per reporting node: "
              "density is what elastic packing buys.",
              "timeseries", COUNT,
              [Query("avg(max by (node) (kubecarbon_node_pods))", "pods, average"),
               Query("max(max by (node) (kubecarbon_node_pods))", "pods, largest"),
               Query("avg(max by (node) (kubecarbon_node_containers))", "containers, average"),
               Query("max(max by (node) (kubecarbon_node_containers))", "containers, largest")],
              decimals=0),
        Panel("Grid carbon intensity in use",
              "The grid factor each region's energy is priced at, in grams CO2e per kWh (from "
              "the model defaults, the config file or an hourly file).",
              "bargauge", GRID_INTENSITY,
              [Query("max by (region) (kubecarbon_grid_carbon_intensity_grams_per_kilowatt_hour)",
                     "{{region}}", instant=True)],
              decimals=0,
              options={"orientation": "horizontal", "displayMode": "basic",
                       "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}),
        Panel("Logical CPUs and busy CPUs",
              "Logical CPUs of the reporting nodes and how many of them were busy on average.",
              "timeseries", CPUS,
              [Query("sum(max by (node) (kubecarbon_node_logical_cpus))", "logical CPUs"),
               Query("sum(max by (node) (kubecarbon_node_cpu_usage_ratio"
                     " * kubecarbon_node_logical_cpus))", "busy CPUs")],
              decimals=0),
    ]
    return dashboard(
        "kubecarbon-fleet", "kubecarbon / Fleet overview",
        "What elastic packing avoids against a dedicated-server baseline: servers, energy, CO2e.",
        panels, [], "now-7d",
    )


NODE = 'node=~"$node"'


def node_drilldown() -> dict[str, Any]:
    panels = [
        Panel("CPU utilisation",
              "Busy share of the node's logical CPUs in its latest report window.",
              "timeseries", RATIO,
              [Query(f"max by (node) (kubecarbon_node_cpu_usage_ratio{{{NODE}}})", "{{node}}")],
              decimals=1),
        Panel("IT power",
              "Estimated or measured (RAPL) IT power of the node in watts; power_source says "
              "which.",
              "timeseries", WATTS,
              [Query(f"max by (node, power_source) (kubecarbon_node_power_watts{{{NODE}}})",
                     "{{node}} ({{power_source}})")]),
        Panel("IT energy per hour",
              "IT energy the node used in each hour, in kWh.",
              "timeseries", KILOWATT_HOURS,
              [Query(f"sum by (node) (increase(kubecarbon_node_energy_joules_total{{{NODE}}}[1h]))"
                     " / 3.6e6", "{{node}}")],
              decimals=2),
        Panel("CO2e per hour",
              "Operational CO2e (energy x PUE x grid factor) and the node's share of embodied "
              "CO2e, in grams per hour.",
              "timeseries", GRAMS,
              [Query(f"sum by (node) (rate(kubecarbon_node_co2e_grams_total{{{NODE}}}[5m]))"
                     " * 3600", "{{node}} operational"),
               Query("sum by (node) (rate(kubecarbon_node_embodied_co2e_grams_total"
                     f"{{{NODE}}}[5m])) * 3600", "{{node}} embodied")],
              decimals=0),
        Panel("Pods and containers",
              "Pods with CPU use and running containers on the node.",
              "timeseries", COUNT,
              [Query(f"max by (node) (kubecarbon_node_pods{{{NODE}}})", "{{node}} pods"),
               Query(f"max by (node) (kubecarbon_node_containers{{{NODE}}})",
                     "{{node}} containers")],
              decimals=0),
        Panel("Seconds since last report",
              "Age of the node's latest report; above a few intervals the agent is missing "
              "(alert KubecarbonAgentMissing).",
              "timeseries", SECONDS,
              [Query(f"time() - max by (node) (kubecarbon_node_last_report_timestamp_seconds"
                     f"{{{NODE}}})", "{{node}}")],
              decimals=0),
        Panel("Nodes on the default profile",
              "Live nodes with no known provider and instance type, priced as a share of the "
              "reference server (alert KubecarbonUnknownNodeProfiles).",
              "stat", COUNT, [Query("sum(kubecarbon_collector_default_profile_nodes)", "nodes")],
              width=6, height=5, decimals=0, options=STAT_OPTIONS),
        Panel("Node profiles",
              "Which profile prices each node: region (grid factor), instance type and power "
              "source. instance_type=\"unknown\" means the default profile.",
              "table", CPUS,
              [Query(f"max by (node, region, instance_type, power_source) "
                     f"(kubecarbon_node_logical_cpus{{{NODE}}})", "", instant=True)],
              width=18, height=5, decimals=0,
              options={"showHeader": True}),
    ]
    node_variable = _query_variable(
        "node", "Node", "label_values(kubecarbon_node_logical_cpus, node)", include_all=True)
    return dashboard(
        "kubecarbon-node", "kubecarbon / Node",
        "One node at a time: utilisation, power, energy, CO2e, density and report freshness.",
        panels, [node_variable], "now-24h",
    )


NAMESPACE = 'namespace=~"$namespace"'


def namespace_attribution() -> dict[str, Any]:
    panels = [
        Panel("Top namespaces by CO2e, last 24 h",
              "The ten namespaces with the most attributed operational CO2e over the last day, "
              "in kilograms. Only dynamic power is split by CPU use; idle power stays with nodes.",
              "bargauge", KILOGRAMS,
              [Query("topk(10, sum by (namespace) "
                     "(increase(kubecarbon_namespace_co2e_grams_total[1d])) / 1e3)",
                     "{{namespace}}", instant=True)],
              decimals=1,
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}),
        Panel("Energy per namespace, last 24 h",
              "IT energy attributed to each namespace over the last day, in kWh.",
              "bargauge", KILOWATT_HOURS,
              [Query("sort_desc(sum by (namespace) (increase("
                     f"kubecarbon_namespace_energy_joules_total{{{NAMESPACE}}}[1d])) / 3.6e6)",
                     "{{namespace}}", instant=True)],
              decimals=2,
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}),
        Panel("CO2e rate by namespace",
              "Attributed operational CO2e per namespace in grams per hour (5 min rate).",
              "timeseries", GRAMS,
              [Query(f"kubecarbon:namespace_co2e_grams_per_hour:rate5m{{{NAMESPACE}}}",
                     "{{namespace}}")],
              decimals=0),
        Panel("Power by namespace",
              "Dynamic IT power attributed to each namespace, in watts (5 min rate of its energy).",
              "timeseries", WATTS,
              [Query(f"kubecarbon:namespace_energy_watts:rate5m{{{NAMESPACE}}}", "{{namespace}}")]),
        Panel("CPU by namespace",
              "Busy logical CPUs used by each namespace's pods (5 min rate of CPU seconds).",
              "timeseries", CPUS,
              [Query(f"sum by (namespace) (rate(kubecarbon_namespace_cpu_seconds_total"
                     f"{{{NAMESPACE}}}[5m]))", "{{namespace}}")],
              width=24, decimals=1),
    ]
    namespace_variable = _query_variable(
        "namespace", "Namespace", "label_values(kubecarbon_namespace_co2e_grams_total, namespace)",
        include_all=True)
    return dashboard(
        "kubecarbon-namespaces", "kubecarbon / Namespaces",
        "Where the energy and CO2e go: attribution of dynamic power to namespaces by CPU use.",
        panels, [namespace_variable], "now-24h",
    )


AVOIDABLE = 'kubecarbon:rightsizing_avoidable_co2e_tonnes_per_year:quantile{{quantile="{q}"}}'
WORKLOAD = "namespace, workload_kind, workload"
BARS = {"orientation": "horizontal", "displayMode": "gradient",
        "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}


def rightsizing() -> dict[str, Any]:
    """Requested versus used CPU, and what rightsizing the requests would save."""
    band = [Query(AVOIDABLE.format(q=q), name)
            for q, name in (("0.5", "estimate"), ("0.05", "p05"), ("0.95", "p95"))]
    panels = [
        Panel("Avoidable nodes",
              "Nodes the fleet's pods would no longer need if every workload requested its "
              "recommended CPU: today's requests and the recommended ones packed onto the "
              "fleet's real node sizes (first fit decreasing), the difference.",
              "stat", COUNT, [Query("kubecarbon:rightsizing_avoidable_nodes:sum", "nodes")],
              width=6, decimals=0, options=STAT_OPTIONS),
        Panel("Avoidable tCO2e per year",
              "Operational and embodied CO2e the avoidable nodes emit in a year at today's "
              "rate, with the p05-p95 band of the model's uncertainty.",
              "stat", TONNES, band, width=10, decimals=1, options=STAT_OPTIONS),
        Panel("Avoidable IT energy per year",
              "Idle IT energy of the avoidable nodes over a year, in kWh (their work moves to "
              "the remaining nodes, so only their idle power is saved).",
              "stat", KILOWATT_HOURS,
              [Query("sum(kubecarbon_rightsizing_avoidable_energy_joules_per_year) / 3.6e6",
                     "kWh per year")],
              width=8, decimals=0, options=STAT_OPTIONS),
        Panel("Requested and used CPU by namespace",
              "Cores the namespace's pods request (what the scheduler reserves) and use (the "
              "agents' CPU seconds), on live nodes.",
              "timeseries", CPUS,
              [Query(f"kubecarbon:namespace_requested_cpu_cores:sum{{{NAMESPACE}}}",
                     "{{namespace}} requested"),
               Query(f"kubecarbon:namespace_used_cpu_cores:sum{{{NAMESPACE}}}",
                     "{{namespace}} used")],
              decimals=1),
        Panel("Used per requested CPU by namespace",
              "Share of the requested CPU the namespace's pods use; "
              "KubecarbonNamespaceRequestsIdle fires when it stays low for hours.",
              "timeseries", RATIO,
              [Query(f"kubecarbon:namespace_cpu_used_per_requested:ratio{{{NAMESPACE}}}",
                     "{{namespace}}")]),
        Panel("Avoidable tCO2e per year over time",
              "The avoidable CO2e per year as it evolves, shaded between p05 and p95.",
              "timeseries", TONNES, band, decimals=1, overrides=_band("p05", "p95")),
        Panel("Nodes needed: current and recommended requests",
              "Nodes the pods need when packed by today's requests and by the recommended ones.",
              "timeseries", COUNT,
              [Query("sum by (requests) (kubecarbon_rightsizing_nodes)", "{{requests}}")],
              decimals=0),
        Panel("Top workloads by idle requested cores",
              "Requested but unused cores, max(requested - used, 0) per workload and node, summed.",
              "bargauge", CPUS,
              [Query(f"topk(10, sum by ({WORKLOAD}) (kubecarbon_workload_idle_requested_cpu_cores"
                     f"{{{NAMESPACE}}}))", "{{namespace}}/{{workload}}", instant=True)],
              decimals=1, options=BARS),
        Panel("Top workloads by avoidable CO2e",
              "Each workload's share of the avoidable tCO2e per year (median), by the requested "
              "cores it would free.",
              "bargauge", TONNES,
              [Query(f"topk(10, sum by ({WORKLOAD}) (kubecarbon_workload_avoidable_co2e_grams_"
                     f"per_year{{{NAMESPACE}}}) / 1e6)", "{{namespace}}/{{workload}}",
                     instant=True)],
              decimals=2, options=BARS),
        Panel("Workload requests and recommendations",
              "Requested cores (all pods), the recommendation (p90 of usage samples plus 15 % by "
              "default) and the sampled history. Workloads with too little history have none.",
              "table", CPUS,
              [Query(f"sum by ({WORKLOAD}) (kubecarbon_workload_requested_cpu_cores"
                     f"{{{NAMESPACE}}})", "requested", instant=True),
               Query(f"sum by ({WORKLOAD}) (kubecarbon_workload_recommended_cpu_cores"
                     f"{{{NAMESPACE}}})", "recommended", instant=True)],
              width=24, decimals=2),
    ]
    namespace_variable = _query_variable(
        "namespace", "Namespace",
        "label_values(kubecarbon_namespace_requested_cpu_cores, namespace)", include_all=True)
    return dashboard(
        "kubecarbon-rightsizing", "kubecarbon / Where servers can still be saved",
        "Capacity requested but not used, and the nodes, energy and CO2e that rightsizing the "
        "CPU requests would save (docs/methodology.md, \"Where servers can still be saved\").",
        panels, [namespace_variable], "now-24h",
    )


DASHBOARDS = {
    "kubecarbon-fleet.json": fleet_overview,
    "kubecarbon-node.json": node_drilldown,
    "kubecarbon-namespaces.json": namespace_attribution,
    "kubecarbon-rightsizing.json": rightsizing,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def generated_files() -> dict[Path, str]:
    return {
        directory / name: render(build)
        for name, build in DASHBOARDS.items()
        for directory in OUTPUT_DIRS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{path.relative_to(REPO_ROOT)} {'is stale' if args.check else 'rewritten'}",
              file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
