"""The conservative preset through the real HTTP API: overhead pods are not demand."""

from __future__ import annotations

import dataclasses

import pytest
from collector_testkit import JSON, body_of, make_report, metadata_for_tests, samples, value

from collector.app import create_app
from collector.metadata import PodInfo, StaticMetadataProvider
from collector.model.parameters import ModelParameters
from collector.profiles import ProfileConfig, parse_profile_document
from collector.settings import Settings


def _metadata() -> StaticMetadataProvider:
    base = metadata_for_tests()
    dns = PodInfo("uid-dns-1", "kube-system", "coredns-5d-x", "Deployment", "coredns")
    return StaticMetadataProvider(
        nodes={"ip-10-0-1-17": base.node("ip-10-0-1-17")},
        pods={"uid-web-1": base.pod("uid-web-1"), "uid-dns-1": dns},
    )


def _model_info(text: str) -> dict[str, str]:
    (labels,) = [dict(key) for (name, key), v in samples(text).items()
                 if name == "kubecarbon_model_info" and v == 1]
    return labels


async def _scrape(aiohttp_client, clock, params: ModelParameters) -> str:
    settings = dataclasses.replace(Settings(), profiles=ProfileConfig(model=params))
    client = await aiohttp_client(create_app(settings, metadata=_metadata(), clock=clock,
                                             status_page=False))
    pods = [{"uid": "uid-web-1", "cpu_seconds": 60.0, "containers": 2},
            {"uid": "uid-dns-1", "cpu_seconds": 30.0, "containers": 1}]
    response = await client.post("/api/v1/reports", data=body_of(make_report(pods=pods)),
                                 headers=JSON)
    assert response.status == 200, await response.text()
    return await (await client.get("/metrics")).text()


async def test_conservative_preset_leaves_kube_system_out_of_the_baseline(aiohttp_client, clock):
    conservative = parse_profile_document({"model": {"preset": "conservative"}}).model
    assert conservative == ModelParameters.conservative()
    text = await _scrape(aiohttp_client, clock, conservative)
    # 120 busy CPU-seconds in 15 s, 30 of them kube-system: 6 CPUs of demand, not 8
    assert value(text, "kubecarbon_baseline_servers") == pytest.approx(6 / (112 * 0.18))
    assert value(text, "kubecarbon_fleet_cpu_usage_ratio") == pytest.approx(0.5)  # as measured
    # embodied credit only for servers that exist: none here, the fleet is smaller
    assert value(text, "kubecarbon_avoided_co2e_grams_total", scope="embodied") == 0.0
    info = _model_info(text)
    assert info["preset"] == "conservative"
    assert info["overhead_namespaces"] == "kube-system,kubecarbon"
    assert info["embodied_credit"] == "existing_servers_only"
    assert info["baseline_utilisation"] == "0.18"


async def test_default_preset_counts_every_busy_cpu(aiohttp_client, clock):
    text = await _scrape(aiohttp_client, clock, ModelParameters())
    assert value(text, "kubecarbon_baseline_servers") == pytest.approx(8 / (112 * 0.15))
    info = _model_info(text)
    assert (info["preset"], info["overhead_namespaces"]) == ("default", "")


def test_a_preset_must_be_known():
    with pytest.raises(ValueError, match=r"model\.preset: expected one of default, conservative"):
        parse_profile_document({"model": {"preset": "optimistic"}})
