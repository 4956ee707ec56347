"""The report's rightsizing section (collector/report/rightsizing.py), on hand numbers,
and its CSV, JSON and HTML renderings. The section read from a real Prometheus is in
test_report_prometheus.py."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from collector.report.render import render_json, rightsizing_csv_rows, rightsizing_html
from collector.report.rightsizing import RightsizingData, rightsizing_section

WEB = ("shop", "Deployment", "web")
BATCH = ("ops", "CronJob", "backup")
NEW = ("shop", "Deployment", "checkout")


def sample() -> RightsizingData:
    return RightsizingData(
        workloads={
            WEB: {"requested_cores": 40.0, "idle_requested_cores": 30.0,
                  "recommended_cores": 11.5, "avoidable_co2e_grams_per_year": 3.0e6},
            BATCH: {"requested_cores": 8.0, "idle_requested_cores": 6.0,
                    "recommended_cores": 2.3, "avoidable_co2e_grams_per_year": 1.0e6},
            NEW: {"requested_cores": 4.0, "idle_requested_cores": 3.5},
        },
        fleet={"avoidable_nodes": 4.0, "avoidable_energy_joules_per_year": 3.6e9 * 2,
               "avoidable_co2e_grams_per_year_0.05": 2.0e6,
               "avoidable_co2e_grams_per_year_0.5": 4.0e6,
               "avoidable_co2e_grams_per_year_0.95": 6.0e6},
    )


def test_top_workloads_get_their_share_of_the_fleets_yearly_savings() -> None:
    section = rightsizing_section(sample())
    assert section["fleet"] == {
        "avoidable_nodes": 4.0, "avoidable_it_energy_kwh_per_year": 2000.0,
        "avoidable_tco2e_per_year_band": {"p05": 2.0, "p50": 4.0, "p95": 6.0}}
    web, batch = section["top_workloads"]
    # web: 3 of the fleet's median 4 tCO2e/yr -> 3/4 of the nodes, the kWh and each quantile
    assert (web["namespace"], web["workload"], web["share_of_savings"]) == ("shop", "web", 0.75)
    assert web["nodes_per_year"] == pytest.approx(3.0)
    assert web["it_energy_kwh_per_year"] == pytest.approx(1500.0)
    assert web["tco2e_per_year"] == pytest.approx(3.0)
    assert web["tco2e_per_year_band"] == pytest.approx({"p05": 1.5, "p50": 3.0, "p95": 4.5})
    assert batch["tco2e_per_year_band"] == pytest.approx({"p05": 0.5, "p50": 1.0, "p95": 1.5})
    # no recommendation: listed apart, never sized
    assert section["without_recommendation"] == [
        {"namespace": "shop", "workload_kind": "Deployment", "workload": "checkout",
         "requested_cores": 4.0}]
    assert rightsizing_section(sample(), top=1)["top_workloads"] == [web]


def test_no_rightsizing_series_in_the_period() -> None:
    assert rightsizing_section(None)["available"] is False
    empty = rightsizing_section(RightsizingData({}, {"avoidable_nodes": None}))
    assert empty["available"] is False and empty["top_workloads"] == []


def test_csv_json_and_html_carry_the_same_numbers() -> None:
    section = rightsizing_section(sample())
    document = {"rightsizing": section}
    assert orjson.loads(render_json(document))["rightsizing"] == orjson.loads(
        orjson.dumps(section))
    # the section's own rows of the CSV (the rest of the report is tested elsewhere)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rightsizing_csv_rows(section))
    values = {(r[0], r[1], r[2]): r[3] for r in csv.reader(io.StringIO(buffer.getvalue()))}
    assert float(values["rightsizing", "fleet", "avoidable_nodes"]) == 4.0
    assert float(values["rightsizing", "fleet", "avoidable_tco2e_per_year_p95"]) == 6.0
    assert float(values["rightsizing_workload", "shop/Deployment/web",
                        "tco2e_per_year_p05"]) == pytest.approx(1.5)
    assert float(values["rightsizing_workload", "shop/Deployment/web",
                        "it_energy_kwh_per_year"]) == pytest.approx(1500.0)
    assert values["rightsizing_not_enough_history", "shop/Deployment/checkout",
                  "requested_cores"] == "4.0"


def test_html_section_names_the_workloads_and_the_band() -> None:
    page = rightsizing_html(rightsizing_section(sample()))
    assert "Where servers can still be saved" in page
    assert "<b>4.0</b> nodes" in page and "2,000 kWh" in page
    assert "4.000 tCO2e per year (p05 2.000, p95 6.000)" in page
    assert "shop/web (Deployment)" in page and "1.500 / 3.000 / 4.500" in page
    assert "Not enough history for a recommendation: shop/checkout" in page
    assert "published no rightsizing series" in rightsizing_html(None)
