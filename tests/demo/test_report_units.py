"""The report's pure parts: time arguments, counter arithmetic, the sample grid, renderers."""

import csv
import io
import itertools
import re

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.metrics import SPECS
from collector.model.assumptions import (
    model_info_labels,
    parameters_from_labels,
    uncertainty_ranges,
)
from collector.model.estimate import POWER_SOURCES, WindowBatch, estimate_windows
from collector.model.fleet import avoided_rate_band
from collector.model.parameters import ModelParameters, ProfileArrays, make_profile
from collector.report.band import PeriodBand, period_band
from collector.report.document import report_document
from collector.report.period import chunks, parse_time, sample_grid
from collector.report.reduction import (
    CounterAccumulator,
    CounterTotals,
    ReportData,
    series_delta,
    series_increase,
)
from collector.report.render import render_csv, render_html, render_json

NOW = 1_764_072_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("now-24h", NOW - 86400),
        ("now - 30m", NOW - 1800),
        ("now-7d", NOW - 7 * 86400),
        ("now-1.5h", NOW - 5400),
        ("now-2w", NOW - 14 * 86400),
        ("1764000000", 1_764_000_000.0),
        ("1764000000.5", 1_764_000_000.5),
        ("2025-11-25T12:00:00Z", 1_764_072_000.0),
        ("2025-11-25T20:00:00+08:00", 1_764_072_000.0),
    ],
)
def test_times_in_every_accepted_form(text, expected):
    assert parse_time(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "now-3y", "2025-11-25T12:00:00", "-5", "nan", ""])
def test_bad_times_are_refused_with_the_value_named(text):
    with pytest.raises(ValueError, match=re.escape(repr(text.strip()))):
        parse_time(text, NOW)


def test_counter_increase_handles_resets_and_series_born_in_the_period():
    assert series_increase(100.0, [100.0, 110.0, 125.0]) == 25.0
    # a reset to 0 then growth to 7: the rise before it plus the 7 after it
    assert series_increase(100.0, [110.0, 3.0, 7.0]) == 10.0 + 3.0 + 4.0
    # no value before the period: the series counts from zero
    assert series_increase(None, [5.0, 9.0]) == 9.0


def test_signed_totals_are_last_minus_first_even_when_they_fall():
    assert series_delta(100.0, [90.0, 80.0, 120.0]) == 20.0
    assert series_delta(100.0, [90.0, 60.0]) == -40.0
    assert series_delta(None, [-5.0]) == -5.0
    assert series_delta(3.0, []) == 0.0


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50))
def test_counter_increase_of_a_monotonic_series_is_last_minus_first(increments):
    values = []
    total = 0.0
    for increment in increments:
        total += increment
        values.append(total)
    assert series_increase(values[0], values) == pytest.approx(values[-1] - values[0], abs=1e-6)


@given(start=st.floats(1e9, 2e9), length=st.floats(1, 30 * 86400), step=st.floats(60, 3600),
       per_chunk=st.integers(2, 500))
def test_the_grid_lands_on_start_and_end_and_chunks_cover_it_once(start, length, step, per_chunk):
    end = start + length
    real_step, count = sample_grid(start, end, step)
    assert real_step <= step * (1 + 1e-9)
    assert start + count * real_step == pytest.approx(end)
    pieces = chunks(start, real_step, count, per_chunk)
    assert pieces[0][0] == start
    assert pieces[-1][1] == pytest.approx(end)
    points = sum(round((b - a) / real_step) + 1 for a, b in pieces)
    assert points == count + 1
    for (_, b), (a, _) in itertools.pairwise(pieces):
        assert a - b == pytest.approx(real_step)


def sample_data() -> ReportData:
    def totals(**groups: float) -> CounterTotals:
        return CounterTotals({tuple(k.split("|")): v for k, v in groups.items()})

    kwh = 3.6e6
    return ReportData(
        start=NOW - 86400, end=NOW, step_seconds=43.2, prometheus_url="http://prom:9090",
        counters={
            "it_energy_joules": totals(**{"china-east|specpower_curve": 10 * kwh,
                                          "us-east-1|cloud_linear": 5 * kwh}),
            "operational_co2e_grams": totals(**{"china-east": 8000.0, "us-east-1": 2000.0}),
            "embodied_co2e_grams": totals(**{"china-east": 1000.0}),
            "namespace_cpu_seconds": totals(risk=7200.0, web=3600.0),
            "namespace_energy_joules": totals(risk=4 * kwh, web=kwh),
            "namespace_co2e_grams": totals(risk=3000.0, web=1000.0),
            "facility_energy_joules": totals(**{"china-east": 15.8 * kwh,
                                                "us-east-1": 5.675 * kwh}),
            "baseline_energy_joules": totals(**{"": 40 * kwh}),
            # 25 kWh: 40 baseline - 15 IT, no memory above the reference share
            "avoided_energy_joules": totals(**{"": 25 * kwh}),
            "avoided_co2e_grams": totals(operational=20_000.0, embodied=5_000.0),
        },
        gauge_means={"baseline_servers": 30.0, "actual_servers": 10.0, "avoided_servers": 20.0,
                     "fleet_cpu_usage_ratio": 0.45},
        assumptions=[published_assumptions(ModelParameters())],
        versions=["0.1.0"],
        uncertainty_ranges=published_ranges(ModelParameters()),
    )


def published_assumptions(params: ModelParameters) -> dict[str, str]:
    """model_info's labels as Prometheus returns them."""
    return dict(zip(SPECS["model_info"].labels, model_info_labels(params), strict=True))


def published_ranges(params: ModelParameters) -> dict[str, list[tuple[str, str]]]:
    return {name: [(repr(r.low), repr(r.high))] for name, r in uncertainty_ranges(params)}


def test_document_converts_units_and_sums():
    doc = report_document(sample_data())
    assert doc["totals"]["it_energy_kwh"] == pytest.approx(15)
    # facility energy: the nodes' IT energy times their PUE, summed by the report's query
    assert doc["totals"]["facility_energy_kwh"] == pytest.approx(15.8 + 5.675)
    assert doc["by_region"][0]["facility_energy_kwh"] == pytest.approx(15.8)
    assert doc["baseline"]["avoided_energy_kwh"] == pytest.approx(40 - 15)
    assert doc["baseline"]["shared_memory_energy_kwh"] == pytest.approx(0.0)
    assert doc["totals"]["operational_tco2e"] == pytest.approx(0.01)
    assert doc["totals"]["cpu_core_hours"] == pytest.approx(3)
    assert [r["region"] for r in doc["by_region"]] == ["china-east", "us-east-1"]
    assert doc["by_region"][1]["embodied_tco2e"] == 0
    assert [r["namespace"] for r in doc["by_namespace"]] == ["risk", "web"]  # largest first
    assert doc["baseline"]["avoided_tco2e"] == pytest.approx(0.025)
    band = doc["baseline"]["avoided_tco2e_band"]
    assert band["p05"] < band["p50"] < band["p95"]
    assert "quantile of the sum" in doc["baseline"]["band_method"]
    assert doc["methodology"] == "docs/methodology.md"
    # assumptions the report cannot rebuild: no band at all, and the reason, never the
    # collectors' quantile gauges added up
    data = sample_data()
    data.assumptions.append(published_assumptions(ModelParameters.conservative()))
    refused = report_document(data)
    assert refused["baseline"]["avoided_tco2e_band"] == {"p05": None, "p50": None, "p95": None}
    assert "different assumptions" in refused["baseline"]["band_method"]
    data = sample_data()
    data.uncertainty_ranges["baseline_utilisation"].append(("0.1", "0.2"))
    assert "different ranges" in report_document(data)["baseline"]["band_method"]


def test_json_csv_and_html_carry_the_same_numbers():
    doc = report_document(sample_data())
    assert orjson.loads(render_json(doc)) == orjson.loads(orjson.dumps(doc))
    rows = list(csv.reader(io.StringIO(render_csv(doc))))
    assert rows[0] == ["section", "name", "quantity", "value"]
    values = {(r[0], r[1], r[2]): r[3] for r in rows[1:]}
    assert float(values["region", "china-east", "operational_tco2e"]) == pytest.approx(0.008)
    assert float(values["baseline", "fleet", "avoided_tco2e_p95"]) == pytest.approx(
        doc["baseline"]["avoided_tco2e_band"]["p95"])
    assert values["assumption", "0", "baseline_utilisation"] == "0.15"
    page = render_html(doc)
    assert "0.025" in page and "china-east" in page and "docs/methodology.md" in page
    assert "baseline_utilisation" in page


def test_html_is_self_contained_and_escapes_labels():
    data = sample_data()
    data.assumptions = [{"note": "<script>alert(1)</script>"}]
    page = render_html(report_document(data))
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert not re.search(r"(src|href)\s*=", page)
    assert "http://" not in page.replace("http://prom:9090", "")


def test_period_band_is_the_models_band_for_an_hour_of_a_steady_fleet():
    """An hour of identical windows: the report's band from its counters must equal the
    model's own band for one hour at that fleet's rate (avoided_co2e_rate_quantiles)."""
    params = ModelParameters()
    profiles = ProfileArrays.from_profiles(
        [make_profile("aws", "eu-west-1"), make_profile("baremetal", "china-east")] * 10, params)
    window = WindowBatch.of(duration_seconds=15.0, logical_cpus=[16.0, 112.0] * 10,
                            busy_seconds=[16 * 15 * 0.45, 112 * 15 * 0.55] * 10,
                            memory_total_bytes=[64 * 2**30, 384 * 2**30] * 10)
    estimate = estimate_windows(window, profiles, params)
    per_window = 3600 / 15  # windows in the hour, every one like this one

    def total(array) -> float:
        return float(np.sum(array)) * per_window

    # the counters carry each node's region, as the collector labels them
    regions = ["eu-west-1", "china-east"] * 10
    sources = [POWER_SOURCES[int(k)] for k in estimate.power_source]
    energy: dict[tuple[str, str], float] = {}
    operational: dict[tuple[str], float] = {}
    for region, source, joules, grams in zip(regions, sources, estimate.energy_joules,
                                             estimate.operational_co2e_grams, strict=True):
        energy[region, source] = energy.get((region, source), 0.0) + float(joules) * per_window
        operational[region,] = operational.get((region,), 0.0) + float(grams) * per_window
    data = sample_data()
    data.counters.update({
        "it_energy_joules": CounterTotals(energy),
        "operational_co2e_grams": CounterTotals(operational),
        "embodied_co2e_grams": CounterTotals({("r",): total(estimate.embodied_co2e_grams)}),
        "baseline_energy_joules": CounterTotals({(): total(estimate.baseline_energy_joules)}),
        "avoided_energy_joules": CounterTotals({(): total(estimate.avoided_energy_joules)}),
        "avoided_co2e_grams": CounterTotals({
            ("operational",): total(estimate.avoided_operational_co2e_grams),
            ("embodied",): total(estimate.avoided_embodied_co2e_grams)}),
    })
    data.start, data.end = NOW - 3600, NOW
    result = period_band(data)
    assert isinstance(result, PeriodBand)
    band = result.band
    expected = avoided_rate_band(window, estimate, params, draws=1000, seed=0)
    # without RAPL every weight is recovered exactly, even for mixed regions and PUEs, and
    # the memory above the reference share (the m5-like VMs carry 4 GiB a vCPU) cancels
    assert [band.co2e_grams.p05, band.co2e_grams.p50, band.co2e_grams.p95] == pytest.approx(
        [expected.co2e_grams.p05, expected.co2e_grams.p50, expected.co2e_grams.p95], rel=1e-9)
    assert [band.servers.p05, band.servers.p50, band.servers.p95] == pytest.approx(
        [expected.servers.p05, expected.servers.p50, expected.servers.p95], rel=1e-9)
    assert band.co2e_grams.p05 < band.co2e_grams.p50 < band.co2e_grams.p95
    assert "quantile of the sum" in result.method
    doc = report_document(data)
    assert doc["baseline"]["avoided_tco2e_band"]["p50"] == pytest.approx(
        band.co2e_grams.p50 / 1e6)
    assert doc["baseline"]["mean_avoided_servers_band"]["p50"] == pytest.approx(band.servers.p50)


def test_period_band_for_a_single_region_fleet_is_exact():
    params = ModelParameters()
    profiles = ProfileArrays.repeat(make_profile("baremetal", "china-north"), 5, params)
    window = WindowBatch.of(duration_seconds=60.0, logical_cpus=112.0,
                            busy_seconds=[112 * 60 * u for u in (0.3, 0.4, 0.5, 0.6, 0.7)])
    estimate = estimate_windows(window, profiles, params)
    per_window = 60.0  # an hour
    data = sample_data()
    data.counters.update({
        "it_energy_joules": CounterTotals(
            {("china-north", "specpower_curve"): float(estimate.energy_joules.sum()) * per_window}),
        "operational_co2e_grams": CounterTotals(
            {("china-north",): float(estimate.operational_co2e_grams.sum()) * per_window}),
        "embodied_co2e_grams": CounterTotals(
            {("china-north",): float(estimate.embodied_co2e_grams.sum()) * per_window}),
        "baseline_energy_joules": CounterTotals(
            {(): float(estimate.baseline_energy_joules.sum()) * per_window}),
        "avoided_energy_joules": CounterTotals(
            {(): float(estimate.avoided_energy_joules.sum()) * per_window}),
        "avoided_co2e_grams": CounterTotals({
            ("operational",): float(estimate.avoided_operational_co2e_grams.sum()) * per_window,
            ("embodied",): float(estimate.avoided_embodied_co2e_grams.sum()) * per_window}),
    })
    data.start, data.end = NOW - 3600, NOW
    result = period_band(data)
    assert isinstance(result, PeriodBand)
    band = result.band.co2e_grams
    expected = avoided_rate_band(window, estimate, params, draws=1000, seed=0).co2e_grams
    assert [band.p05, band.p50, band.p95] == pytest.approx(
        [expected.p05, expected.p50, expected.p95], rel=1e-9)
    point = float((estimate.avoided_operational_co2e_grams
                   + estimate.avoided_embodied_co2e_grams).sum()) * per_window
    assert band.p05 < point < band.p95


def matrix(*series: tuple[str, str, list[float]]) -> list[dict]:
    return [{"metric": {"node": node, "region": region},
             "values": [[1_764_000_000 + k, repr(v)] for k, v in enumerate(values)]}
            for node, region, values in series]


@given(st.lists(st.lists(st.floats(0, 1e6), min_size=1, max_size=20), min_size=1, max_size=5),
       st.integers(1, 7))
def test_chunked_accumulation_equals_one_pass(raw_series, chunk_points):
    series = [(f"n{i}", "r", values) for i, values in enumerate(raw_series)]
    whole = CounterAccumulator({}, signed=False)
    whole.add(matrix(*series))
    chunked = CounterAccumulator({}, signed=False)
    longest = max(len(values) for _, _, values in series)
    for start in range(0, longest, chunk_points):
        chunked.add(matrix(*((n, r, v[start:start + chunk_points]) for n, r, v in series)))
    assert chunked.totals(("region",)).total == pytest.approx(whole.totals(("region",)).total)


def test_accumulator_across_chunks_resets_and_vanishing_series():
    key = (("node", "a"), ("region", "east"))
    counter = CounterAccumulator({key: 100.0}, signed=False)
    counter.add(matrix(("a", "east", [110.0, 120.0]), ("b", "west", [5.0])))
    counter.add(matrix(("a", "east", [2.0, 4.0])))  # reset between the chunks; b is gone
    totals = counter.totals(("region",))
    assert totals.by_group == {("east",): 20.0 + 2.0 + 2.0, ("west",): 5.0}
    signed = CounterAccumulator({key: 100.0}, signed=True)
    signed.add(matrix(("a", "east", [90.0])))
    signed.add(matrix(("a", "east", [70.0, 80.0])))
    assert signed.totals(("region",)).by_group == {("east",): -20.0}


def test_disclosure_section_in_json_csv_and_html():
    """ISO 14064-2 / WBCSD 2023 / SCI: what a reader of an avoided-emissions figure is owed."""
    data = sample_data()
    data.assumptions = [published_assumptions(ModelParameters.conservative())]
    doc = report_document(data)
    section = orjson.loads(render_json(doc))["disclosure"]
    assert "not offsets" in section["statement"] and "separately" in section["statement"]
    assert "non-elastic" in section["baseline_scenario"] and section["preset"] == "conservative"
    assert section["boundary"]["included"] and section["boundary"]["excluded"]
    assert section["period"] == doc["period"]
    sources = " ".join(row["source"] for row in section["data_sources"])
    # vintages: the SPECpower results by id and date, CCF by commit
    assert "power_ssj2008-20170829-00780 (published 2017-09-13)" in sources
    assert "@ b7a049c7" in sources
    assumptions = {row["name"]: row for row in section["assumptions"]}
    assert assumptions["baseline_utilisation"]["value"] == 0.18  # the conservative preset
    assert assumptions["baseline_utilisation"]["range"] == [0.12, 0.18]
    assert assumptions["embodied_credit"]["value"] == "existing_servers_only"
    assert assumptions["overhead_namespaces"]["value"] == "kube-system, kubecarbon"
    for name in ("power_curve_multiplier", "cloud_power_multiplier", "rapl_platform_factor",
                 "pue_multiplier", "grid_intensity_multiplier",
                 "embodied_kilograms_per_server", "server_lifetime_years"):
        assert assumptions[name]["range"] is not None and assumptions[name]["source"], name
    assert section["method_version"].startswith("kubecarbon-avoided-emissions/")
    uncertainty = section["uncertainty"]
    assert uncertainty["avoided_tco2e"]["p05"] < uncertainty["avoided_tco2e"]["p95"]
    assert uncertainty["mean_avoided_servers"]["p05"] <= uncertainty["mean_avoided_servers"]["p95"]
    # SCI: (operational + embodied) per core-hour: 8,000 + 2,000 + 1,000 g over 3 core-hours
    assert section["sci"]["gco2e_per_functional_unit"] == pytest.approx(11_000 / 3)

    rows = list(csv.reader(io.StringIO(render_csv(doc))))
    disclosure_rows = {(r[1], r[2]): r[3] for r in rows if r[0] == "disclosure"}
    assert "not offsets" in disclosure_rows["statement", ""]
    assert disclosure_rows["assumption", "baseline_utilisation"] == "0.18"
    assert disclosure_rows["assumption_range", "baseline_utilisation"] == "0.12..0.18"
    assert "NRDC" in disclosure_rows["assumption_source", "baseline_utilisation"]
    assert disclosure_rows["preset", ""] == "conservative"
    assert float(disclosure_rows["uncertainty", "avoided_tco2e_p95"]) == pytest.approx(
        uncertainty["avoided_tco2e"]["p95"])

    page = render_html(doc)
    assert "<h2>Disclosure</h2>" in page
    for text in ("not offsets", "Baseline scenario", "Boundary", "Data sources and vintages",
                 "power_ssj2008-20170829-00780", "NRDC", "Monte Carlo noise",
                 "kubecarbon-avoided-emissions/", "Software Carbon Intensity"):
        assert text in page, text


def test_disclosure_says_why_when_assumptions_are_unknown():
    data = sample_data()
    data.assumptions = []
    section = report_document(data)["disclosure"]
    assert section["assumptions"] == []
    assert "no kubecarbon_model_info" in section["assumptions_unknown_because"]
    assert "Assumptions unknown" in render_html(report_document(data))


def test_published_assumptions_round_trip_even_without_empty_labels():
    for params in (ModelParameters(), ModelParameters.conservative()):
        labels = {k: v for k, v in published_assumptions(params).items() if v}  # as scraped
        ranges = {name: pairs[0] for name, pairs in published_ranges(params).items()}
        assert parameters_from_labels(labels, ranges) == params
