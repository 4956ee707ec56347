"""Hourly grid intensity file: parsing with clear errors, and its effect on CO2e end to end."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from collector_testkit import JSON, T0, body_of, make_report, metadata_for_tests, value

from collector.app import create_app
from collector.intensity import parse_hourly_intensity
from collector.options import SettingsError, parse_settings
from collector.settings import Settings

HOUR = int(T0 // 3600)
T14 = 1795615200  # 2026-11-25T14:00:00Z


def test_iso_and_unix_hours_parse_to_the_same_table():
    table = parse_hourly_intensity(
        "region,hour,grams_per_kilowatt_hour\n"
        "us-east-1,2025-11-25T12:00:00Z,400\n"
        f"china-east,{HOUR * 3600},550.5\n\n"
    )
    assert dict(table.grams_per_kilowatt_hour) == {("us-east-1", HOUR): 400.0,
                                                   ("china-east", HOUR): 550.5}
    looked_up = table.lookup(["us-east-1", "us-east-1", "nowhere"],
                             [T0 + 10, T0 + 3600, T0])
    assert looked_up[0] == 400.0
    assert looked_up[1] != looked_up[1] and looked_up[2] != looked_up[2]  # NaN: not covered


def test_any_time_zone_names_the_hour_it_starts():
    table = parse_hourly_intensity(
        "region,hour,grams_per_kilowatt_hour\n"
        "china-east,2026-11-25T14:00:00Z,548.2\n"
        "china-east,2026-11-25T23:00:00+08:00,551.0\n"
        f"china-north,{T14},640.5\n"
    )
    values = table.lookup(
        ["china-east", "china-east", "china-east", "china-north", "china-south"],
        [T14 + 1799, T14 + 3600 + 10, T14 + 7200, T14 + 3599, T14],
    )
    assert values[:2].tolist() == [548.2, 551.0]
    assert math.isnan(values[2])  # no row for 16:00
    assert values[3] == 640.5
    assert math.isnan(values[4])  # region not in the file


def test_the_documented_example_file_starts_a_collector(tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "methodology.md").read_text()
    example = re.search(r"```csv\n(.*?)```", doc, flags=re.DOTALL)
    assert example is not None and "--grid-intensity-file" in doc
    path = tmp_path / "hourly.csv"
    path.write_text(example.group(1))
    table = parse_settings(["--grid-intensity-file", str(path)], env={}).hourly_intensity
    assert table is not None
    hour = T14 // 3600
    assert dict(table.grams_per_kilowatt_hour) == {
        ("china-east", hour): 548.2, ("china-east", hour + 1): 551.0, ("us-east-1", hour): 402.5}


@pytest.mark.parametrize(("text", "message"), [
    ("", "line 1: expected the header"),
    ("region,when,g\n", "line 1: expected the header"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,2025-11-25T12:30:00Z,1\n",
     "line 2: hour: '2025-11-25T12:30:00Z' is not the start of an hour"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,2025-11-25T12:00:00,1\n",
     "line 2: hour: '2025-11-25T12:00:00' has no time zone"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,yesterday,1\n",
     "line 2: hour: expected ISO 8601"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,inf,1\n",
     "line 2: hour: 'inf' is not the start of an hour"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,3600,lots\n", "line 2: could not convert"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,3600,nan\n",
     "line 2: grams_per_kilowatt_hour: must be 0..5000"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,3600,-1\n",
     "line 2: grams_per_kilowatt_hour: must be 0..5000"),
    ("region,hour,grams_per_kilowatt_hour\n,3600,1\n", "line 2: region: empty"),
    ("region,hour,grams_per_kilowatt_hour\nus-east-1,3600\n", "line 2: expected 3 columns"),
    ("region,hour,grams_per_kilowatt_hour\na,3600,1\na,3600,2\n", "line 3: a second value"),
])
def test_bad_files_name_the_line(text, message):
    with pytest.raises(ValueError) as bad:
        parse_hourly_intensity(text)
    assert message in str(bad.value)


def test_a_bad_file_stops_the_collector_at_start(tmp_path):
    path = tmp_path / "hourly.csv"
    path.write_text("region,hour,grams_per_kilowatt_hour\nus-east-1,noon,1\n")
    with pytest.raises(SettingsError) as bad:
        parse_settings(["--grid-intensity-file", str(path)], env={})
    assert str(bad.value).startswith("argument --grid-intensity-file:")
    assert "line 2" in str(bad.value)


async def test_hourly_value_replaces_the_table_for_covered_hours(aiohttp_client, clock,
                                                                 tmp_path):
    path = tmp_path / "hourly.csv"
    # the first window (T0-15 .. T0) is in the hour before T0; the second is in T0's hour
    path.write_text("region,hour,grams_per_kilowatt_hour\n"
                    f"us-east-1,{(HOUR - 1) * 3600},100\n")
    settings = dataclasses.replace(
        Settings(), hourly_intensity=parse_settings(
            ["--grid-intensity-file", str(path)], env={}).hourly_intensity)
    client = await aiohttp_client(create_app(settings, metadata=metadata_for_tests(),
                                             clock=clock, status_page=False))
    node = {"node": "ip-10-0-1-17", "region": "us-east-1", "instance_type": "m5.4xlarge",
            "power_source": "cloud_linear"}
    energy = (16 * (0.74 + 0.5 * 2.76) + (64 - 16 * 192 / 112) * 0.392) * 15
    await client.post("/api/v1/reports", data=body_of(make_report(seq=1)), headers=JSON)
    text = await (await client.get("/metrics")).text()
    assert value(text, "kubecarbon_node_co2e_grams_total", **node) == pytest.approx(
        energy * 1.135 * 100 / 3.6e6)
    await client.post("/api/v1/reports", data=body_of(make_report(seq=2, start=T0)),
                      headers=JSON)
    text = await (await client.get("/metrics")).text()
    assert value(text, "kubecarbon_node_co2e_grams_total", **node) == pytest.approx(
        energy * 1.135 * (100 + 379.1) / 3.6e6)
    # the gauge shows what the latest window used: the table's value again
    assert value(text, "kubecarbon_grid_carbon_intensity_grams_per_kilowatt_hour",
                 region="us-east-1") == 379.1
