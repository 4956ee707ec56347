"""The status page in a real headless Chromium, served by a real collector.

The collector is fed a simulated fleet over HTTP, then left alone so its numbers
hold still; the browser loads `/`, the test reads what the page shows and checks
it against `/metrics`, checks from Chromium's network log that the page asked
nothing of anyone but the collector, and inspects a screenshot for content.
Set KUBECARBON_UPDATE_SCREENSHOT=1 to also copy the screenshot to docs/img/status.png.
"""

import asyncio
import json
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import numpy as np
import psutil
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from collector.app import FLEET_VIEWS_KEY, LEDGER_KEY, create_app
from collector.model.coefficients import SPECPOWER_DELL_R740
from collector.model.curve import curve_watts_at
from collector.settings import Settings
from collector.simulate import FleetSettings, SimulatedFleet, post_reports
from collector.status import StatusSettings, add_status_routes

CHROMIUM = shutil.which("chromium")  # Debian packages chromium and chromium-driver
CHROMEDRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 10


def metrics_by_name(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def browse(url: str, profile_dir: Path, screenshot: Path, rendered_after: float) -> dict:
    """Load the page, wait for data newer than `rendered_after`, read it; blocking (a thread)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile_dir}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver_pid = service.process.pid
    try:
        driver.get(url)
        WebDriverWait(driver, 30).until(
            lambda d: float(d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered")
                            or 0) > rendered_after)
        # One script reads everything: the page redraws every second, and element handles
        # taken across several WebDriver calls can go stale between two of them.
        shown = driver.execute_script(READ_PAGE_SCRIPT)
        # the whole page in one picture: a viewport as tall as the document
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1400, "height": max(900, height), "deviceScaleFactor": 1, "mobile": False})
        time.sleep(0.5)  # the charts redraw at the new width on the next refresh
        driver.save_screenshot(str(screenshot))
        shown["requests"] = [
            event["params"]["request"]["url"]
            for entry in driver.get_log("performance")
            if (event := json.loads(entry["message"])["message"])["method"]
            == "Network.requestWillBeSent"
        ]
    finally:
        driver.quit()
    shown["driver_pid"] = driver_pid
    return shown


READ_PAGE_SCRIPT = """
const text = id => document.getElementById(id).textContent.trim();
const count = selector => document.querySelectorAll(selector).length;
const shown = {};
for (const id of ["avoided-servers", "baseline-servers", "actual-servers",
                  "fleet-utilisation", "nodes", "power-kw", "baseline-power-kw", "avoided-p05",
                  "avoided-p50", "avoided-p95", "energy-kwh", "co2e-kg", "avoided-kg", "error"]) {
  shown[id] = text(id);
}
shown.polylines = {};
for (const chart of ["chart-servers", "chart-power", "chart-avoided"]) {
  shown.polylines[chart] = count(`#${chart} polyline`);
}
shown.band_polygons = count("#chart-avoided polygon");
shown.namespace_bars = count("#chart-namespaces rect");
const labels = [...document.querySelectorAll("#chart-namespaces text")].map(e => e.textContent);
shown.namespace_names = labels.filter((_, i) => i % 2 === 0);  // each bar: a name, its value
return shown;
"""


def assert_no_browser_left(profile_dir: Path, timeout_seconds: float = 10.0) -> None:
    """Every Chromium process of this test's profile has exited (they take a moment)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        left = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if any(str(profile_dir) in part for part in cmdline):
                left.append(process.pid)
        if not left:
            return
        assert time.monotonic() < deadline, f"Chromium processes left running: {left}"
        time.sleep(0.2)


def number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.slow
async def test_status_page_shows_the_metrics_numbers(aiohttp_server, tmp_path, monkeypatch):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("chromium and chromium-driver are not installed: run `make apt-deps`")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not go online
    fleet = SimulatedFleet(FleetSettings(nodes=120, seed=5, window_seconds=1.0))
    app = create_app(Settings(kubernetes="off"), metadata=fleet.metadata(), status_page=False)
    # one history point a second, so a few seconds of feeding draw the charts
    add_status_routes(app, app[LEDGER_KEY], app[FLEET_VIEWS_KEY],
                      StatusSettings(interval_seconds=1.0, refresh_seconds=1.0))
    server = await aiohttp_server(app, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        for round_ in range(ROUNDS):
            fleet.load_scale = 1.0 if round_ < ROUNDS // 2 else 0.8  # a visible step down
            await post_reports(session, f"{base}/api/v1/reports", fleet.reports())
            await asyncio.sleep(1.0)
        last_report = time.time()
        async with session.get(f"{base}/metrics") as response:
            metrics = metrics_by_name(await response.text())
        screenshot = tmp_path / "status.png"
        shown = await asyncio.to_thread(browse, f"{base}/", tmp_path / "chromium", screenshot,
                                        last_report)
        async with session.get(f"{base}/metrics") as response:
            assert metrics_by_name(await response.text())["kubecarbon_avoided_servers"] == \
                metrics["kubecarbon_avoided_servers"], "numbers moved while the page was read"

    def one(name: str) -> float:
        return sum(value for _, value in metrics[name])

    assert shown["error"] == ""
    # what the page shows, rounded for display, against /metrics
    assert number(shown["avoided-servers"]) == pytest.approx(one("kubecarbon_avoided_servers"),
                                                             abs=0.051)
    assert number(shown["baseline-servers"]) == pytest.approx(
        one("kubecarbon_baseline_servers"), abs=0.051)
    assert number(shown["actual-servers"]) == pytest.approx(one("kubecarbon_actual_servers"),
                                                            abs=0.051)
    assert number(shown["fleet-utilisation"]) == pytest.approx(
        100 * one("kubecarbon_fleet_cpu_usage_ratio"), abs=0.051)
    assert number(shown["nodes"]) == one("kubecarbon_collector_live_nodes") == 120
    assert number(shown["power-kw"]) == pytest.approx(one("kubecarbon_node_power_watts") / 1000,
                                                      abs=0.0051)
    reference_watts = float(curve_watts_at(SPECPOWER_DELL_R740.watts, 0.15))
    assert number(shown["baseline-power-kw"]) == pytest.approx(
        one("kubecarbon_baseline_servers") * reference_watts / 1000, abs=0.0051)
    quantiles = {labels["quantile"]: value
                 for labels, value in metrics["kubecarbon_avoided_co2e_grams_per_hour"]}
    for element, quantile in (("avoided-p05", "0.05"), ("avoided-p50", "0.5"),
                              ("avoided-p95", "0.95")):
        assert number(shown[element]) == pytest.approx(quantiles[quantile] / 1000, abs=0.0051)
    assert number(shown["energy-kwh"]) == pytest.approx(
        one("kubecarbon_node_energy_joules_total") / 3.6e6, abs=0.0051)
    assert number(shown["co2e-kg"]) == pytest.approx(
        one("kubecarbon_node_co2e_grams_total") / 1000, abs=0.0051)
    assert number(shown["avoided-kg"]) == pytest.approx(
        one("kubecarbon_avoided_co2e_grams_total") / 1000, abs=0.0051)

    # the charts are drawn from the history
    assert shown["polylines"] == {"chart-servers": 3, "chart-power": 2, "chart-avoided": 1}
    assert shown["band_polygons"] == 1
    assert 3 <= shown["namespace_bars"] <= 8
    namespaces = sorted(metrics["kubecarbon_namespace_co2e_grams_total"], key=lambda s: -s[1])
    assert shown["namespace_names"] == [labels["namespace"] for labels, _ in namespaces][:8]
    # nothing but the collector was asked for anything
    network = [url for url in shown["requests"] if not url.startswith(("chrome:", "data:"))]
    assert network, "the network log is empty"
    assert all(url.startswith(base + "/") for url in network), network
    assert f"{base}/api/v1/summary" in shown["requests"]
    assert not psutil.pid_exists(shown["driver_pid"]) or \
        psutil.Process(shown["driver_pid"]).status() == psutil.STATUS_ZOMBIE
    assert_no_browser_left(tmp_path / "chromium")

    # the screenshot has content: many colours, not one flat background
    pixels = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[1] >= 1000 and pixels.shape[0] >= 800
    assert pixels.std() > 20
    flat = pixels.reshape(-1, 3)
    _, counts = np.unique(flat.astype(np.uint8), axis=0, return_counts=True)
    assert counts.max() / len(flat) < 0.9  # the commonest colour is not almost everything
    green = (flat[:, 1] > flat[:, 0] + 30) & (flat[:, 1] > flat[:, 2] + 10)
    assert green.mean() > 0.001  # the avoided lines and band are drawn
    if os.environ.get("KUBECARBON_UPDATE_SCREENSHOT") == "1":
        target = REPO / "docs" / "img" / "status.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)
