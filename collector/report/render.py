"""The report document as CSV (one quantity per row), JSON or one self-contained HTML file."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson


def render_json(document: dict[str, Any]) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else repr(value)


def csv_rows(document: dict[str, Any]) -> list[list[str]]:
    """One quantity per row: section, name, quantity, value (units are in the quantity)."""
    rows = [["section", "name", "quantity", "value"]]
    period = document["period"]
    rows += [["period", "", key, _cell(period[key])] for key in ("start", "end", "hours")]
    rows += [["totals", "fleet", key, _cell(value)] for key, value in document["totals"].items()]
    for row in document["by_region"]:
        rows += [["region", row["region"], k, _cell(v)] for k, v in row.items() if k != "region"]
    for row in document["by_namespace"]:
        rows += [["namespace", row["namespace"], k, _cell(v)]
                 for k, v in row.items() if k != "namespace"]
    for key, value in document["baseline"].items():
        if key.endswith("_band"):
            prefix = key.removesuffix("_band")
            rows += [["baseline", "fleet", f"{prefix}_{p}", _cell(v)] for p, v in value.items()]
        else:
            rows.append(["baseline", "fleet", key, _cell(value)])
    rows += rightsizing_csv_rows(document.get("rightsizing"))
    for index, labels in enumerate(document["assumptions"]):
        rows += [["assumption", str(index), k, v] for k, v in sorted(labels.items())]
    rows += disclosure_rows(document["disclosure"])
    rows.append(["methodology", "", "reference", document["methodology"]])
    return rows


def rightsizing_csv_rows(section: dict[str, Any] | None) -> list[list[str]]:
    """The rightsizing section: fleet savings per year, then one workload per name."""
    if not section or not section["available"]:
        return []
    rows = []
    for key, value in section["fleet"].items():
        if isinstance(value, dict):
            rows += [["rightsizing", "fleet", f"{key.removesuffix('_band')}_{p}", _cell(v)]
                     for p, v in value.items()]
        else:
            rows.append(["rightsizing", "fleet", key, _cell(value)])
    for row in section["top_workloads"]:
        name = f"{row['namespace']}/{row['workload_kind']}/{row['workload']}"
        for key, value in row.items():
            if key in ("namespace", "workload_kind", "workload"):
                continue
            if isinstance(value, dict):
                rows += [["rightsizing_workload", name, f"{key.removesuffix('_band')}_{p}",
                          _cell(v)] for p, v in value.items()]
            else:
                rows.append(["rightsizing_workload", name, key, _cell(value)])
    for row in section["without_recommendation"]:
        name = f"{row['namespace']}/{row['workload_kind']}/{row['workload']}"
        rows.append(["rightsizing_not_enough_history", name, "requested_cores",
                     _cell(row["requested_cores"])])
    return rows


def rightsizing_html(section: dict[str, Any] | None) -> str:
    if not section or not section["available"]:
        return ("<h2>Where servers can still be saved</h2><p>The collectors published no "
                "rightsizing series in this period.</p>")
    fleet = section["fleet"]
    band = fleet["avoidable_tco2e_per_year_band"]
    top = _table(
        ["workload", "requested cores", "recommended cores", "idle requested cores",
         "nodes / yr", "kWh / yr", "tCO2e / yr (p05 / p50 / p95)"],
        ([f"{r['namespace']}/{r['workload']} ({r['workload_kind']})",
          _number(r["requested_cores"], 2), _number(r["recommended_cores"], 2),
          _number(r["idle_requested_cores"], 2), _number(r["nodes_per_year"], 2),
          _number(r["it_energy_kwh_per_year"], 0),
          " / ".join(_number(r["tco2e_per_year_band"][p], 3) for p in ("p05", "p50", "p95"))]
         for r in section["top_workloads"]),
    )
    waiting = ", ".join(f"{r['namespace']}/{r['workload']}"
                        for r in section["without_recommendation"]) or "none"
    return (
        "<h2>Where servers can still be saved</h2>"
        f"<p>If every workload requested its recommended CPU, about "
        f"<b>{_number(fleet['avoidable_nodes'], 1)}</b> nodes could go: "
        f"{_number(fleet['avoidable_it_energy_kwh_per_year'], 0)} kWh of IT energy and "
        f"{_number(band['p50'], 3)} tCO2e per year (p05 {_number(band['p05'], 3)}, "
        f"p95 {_number(band['p95'], 3)}).</p>{top}"
        f"<p class=\"muted\">Not enough history for a recommendation: "
        f"{html.escape(waiting)}. {html.escape(section['method'])}.</p>"
    )


def disclosure_rows(section: dict[str, Any]) -> list[list[str]]:
    """The disclosure as CSV rows: section "disclosure", one statement or value per row."""
    rows = [["disclosure", "standard", str(i), text] for i, text in enumerate(section["standards"])]
    for key in ("statement", "baseline_scenario", "preset", "method_version",
                "assumptions_unknown_because"):
        rows.append(["disclosure", key, "", _cell(section[key])])
    rows += [["disclosure", "period", key, _cell(section["period"][key])]
             for key in ("start", "end", "hours")]
    for side in ("included", "excluded"):
        rows += [["disclosure", f"boundary_{side}", str(i), text]
                 for i, text in enumerate(section["boundary"][side])]
    rows += [["disclosure", "data_source", row["data"], row["source"]]
             for row in section["data_sources"]]
    for row in section["assumptions"]:
        interval = row["range"]
        rows += [
            ["disclosure", "assumption", row["name"], _cell(row["value"])],
            ["disclosure", "assumption_range", row["name"],
             "" if interval is None else f"{interval[0]!r}..{interval[1]!r}"],
            ["disclosure", "assumption_source", row["name"], row["source"]],
        ]
    uncertainty = section["uncertainty"]
    for quantity in ("avoided_tco2e", "mean_avoided_servers"):
        rows += [["disclosure", "uncertainty", f"{quantity}_{p}", _cell(v)]
                 for p, v in uncertainty[quantity].items()]
    rows += [["disclosure", "uncertainty", key, _cell(uncertainty[key])]
             for key in ("method", "draws", "monte_carlo_noise")]
    rows += [["disclosure", "sci", key, _cell(value)] for key, value in section["sci"].items()]
    return rows


def render_csv(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(csv_rows(document))
    return buffer.getvalue()


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


HTML_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:980px;color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #d6dde5;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e7ebf0;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f6f9}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}.card{flex:1 1 200px;background:#f3f8f4;
border:1px solid #cfe3d4;border-radius:6px;padding:.7rem}.card b{display:block;font-size:1.4rem}
.muted{color:#5b6875}code{background:#f3f6f9;padding:0 .2rem}
"""


def render_html(document: dict[str, Any]) -> str:
    """One self-contained file: inline CSS, no scripts, no external requests."""
    period, totals, base = document["period"], document["totals"], document["baseline"]
    band, servers = base["avoided_tco2e_band"], base["mean_avoided_servers_band"]
    cards = [
        ("Avoided tCO2e", _number(base["avoided_tco2e"]),
         f"band p05 {_number(band.get('p05'))} / p50 {_number(band.get('p50'))} / "
         f"p95 {_number(band.get('p95'))}"),
        ("Avoided servers (mean)", _number(base["mean_avoided_servers"], 1),
         f"baseline {_number(base['mean_baseline_servers'], 1)}, "
         f"actual {_number(base['mean_actual_servers'], 1)}"),
        ("Avoided servers, band", _number(servers.get("p50"), 1),
         f"p05 {_number(servers.get('p05'), 1)} / p95 {_number(servers.get('p95'), 1)}"),
        ("Energy (facility)", f"{_number(totals['facility_energy_kwh'])} kWh",
         f"IT {_number(totals['it_energy_kwh'])} kWh"),
        ("Emissions", f"{_number(totals['operational_tco2e'] + totals['embodied_tco2e'])} t",
         f"operational {_number(totals['operational_tco2e'])}, "
         f"embodied {_number(totals['embodied_tco2e'])}"),
    ]
    card_html = "".join(
        f'<div class="card">{html.escape(title)}<b>{html.escape(value)}</b>'
        f'<span class="muted">{html.escape(note)}</span></div>'
        for title, value, note in cards
    )
    regions = _table(
        ["region", "IT energy (kWh)", "facility energy (kWh)", "operational tCO2e",
         "embodied tCO2e"],
        ([r["region"] or "(none)", _number(r["it_energy_kwh"]), _number(r["facility_energy_kwh"]),
          _number(r["operational_tco2e"], 4), _number(r["embodied_tco2e"], 4)]
         for r in document["by_region"]),
    )
    namespaces = _table(
        ["namespace", "CPU core-hours", "energy (kWh)", "tCO2e"],
        ([r["namespace"], _number(r["cpu_core_hours"], 2), _number(r["energy_kwh"]),
          _number(r["tco2e"], 4)] for r in document["by_namespace"]),
    )
    baseline = _table(
        ["quantity", "value"],
        [
            ["baseline energy (kWh)", _number(base["baseline_energy_kwh"])],
            ["avoided energy (kWh)", _number(base["avoided_energy_kwh"])],
            ["memory above the reference share, in both fleets (kWh)",
             _number(base["shared_memory_energy_kwh"])],
            ["avoided operational tCO2e", _number(base["avoided_operational_tco2e"], 4)],
            ["avoided embodied tCO2e", _number(base["avoided_embodied_tco2e"], 4)],
            ["avoided tCO2e, p05", _number(band.get("p05"), 4)],
            ["avoided tCO2e, p50", _number(band.get("p50"), 4)],
            ["avoided tCO2e, p95", _number(band.get("p95"), 4)],
            ["mean avoided servers, p05 / p50 / p95",
             " / ".join(_number(servers.get(p), 1) for p in ("p05", "p50", "p95"))],
            ["mean fleet CPU utilisation", _number(base["mean_fleet_cpu_usage_ratio"], 3)],
        ],
    )
    assumptions = "".join(
        _table(["parameter", "value"], sorted(labels.items()))
        for labels in document["assumptions"]
    ) or "<p>The collector published no kubecarbon_model_info in this period.</p>"
    title = f"kubecarbon report {period['start']} .. {period['end']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head>
<body>
<h1>kubecarbon period report</h1>
<p class="muted">{html.escape(period['start'])} to {html.escape(period['end'])}
({period['hours']:.2f} h), from Prometheus {html.escape(document['source']['prometheus'])},
collector {html.escape(', '.join(document['source']['collector_versions']) or 'unknown')}.</p>
<div class="cards">{card_html}</div>
<h2>Energy and emissions by region</h2>{regions}
<h2>By namespace</h2>{namespaces}
<h2>Against the non-elastic baseline</h2>{baseline}
<p class="muted">{html.escape(base['band_method'])}.</p>
{rightsizing_html(document.get("rightsizing"))}
<h2>Assumptions in force</h2>{assumptions}
{disclosure_html(document["disclosure"])}
<h2>Methodology</h2>
<p>Formulas, default coefficients and their sources:
<code>{html.escape(document['methodology'])}</code> in the kubecarbon repository.
Totals are counter increases between samples {period['step_seconds']:g} s apart.</p>
</body></html>
"""


def disclosure_html(section: dict[str, Any]) -> str:
    """The disclosure as HTML: the statement first, then what a reader must be told."""
    def items(texts: Iterable[str]) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in texts) + "</ul>"

    uncertainty = section["uncertainty"]
    assumptions = _table(
        ["assumption", "value", "range", "source"],
        ([row["name"], _cell(row["value"]),
          "" if row["range"] is None else f"{row['range'][0]:g} .. {row['range'][1]:g}",
          row["source"]] for row in section["assumptions"]),
    ) if section["assumptions"] else (
        f"<p>Assumptions unknown: {html.escape(section['assumptions_unknown_because'] or '')}"
        ".</p>")
    period = section["period"]
    sci = section["sci"]
    return f"""<h2>Disclosure</h2>
<p><b>{html.escape(section['statement'])}</b></p>
<p class="muted">Follows: {html.escape('; '.join(section['standards']))}.</p>
<h3>Baseline scenario</h3><p>{html.escape(section['baseline_scenario'])}
Preset in force: {html.escape(section['preset'] or 'unknown')}.</p>
<h3>Boundary</h3><p>Included:</p>{items(section['boundary']['included'])}
<p>Excluded:</p>{items(section['boundary']['excluded'])}
<h3>Period</h3><p>{html.escape(period['start'])} to {html.escape(period['end'])}
({period['hours']:.2f} h).</p>
<h3>Data sources and vintages</h3>{_table(["data", "source"], (
        [row["data"], row["source"]] for row in section["data_sources"]))}
<h3>Assumptions, ranges and sources</h3>{assumptions}
<h3>Uncertainty</h3><p>Avoided tCO2e p05 / p50 / p95:
{' / '.join(_number(uncertainty['avoided_tco2e'].get(p), 4) for p in ('p05', 'p50', 'p95'))};
mean avoided servers p05 / p50 / p95:
{' / '.join(_number(uncertainty['mean_avoided_servers'].get(p), 1)
            for p in ('p05', 'p50', 'p95'))}.
{html.escape(uncertainty['method'])}; Monte Carlo noise:
{html.escape(uncertainty['monte_carlo_noise'])}.</p>
<h3>Software Carbon Intensity</h3><p>{_number(sci['gco2e_per_functional_unit'], 3)} gCO2e per
{html.escape(sci['functional_unit'])}; {html.escape(sci['formula'])}.</p>
<h3>Method</h3><p>{html.escape(section['method_version'])}; collector
{html.escape(', '.join(section['collector_versions']) or 'unknown')}.</p>
"""


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}
