"""Flags, KUBECARBON_* variables and the YAML config file: precedence and clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.main import build_metadata_provider, main
from collector.metadata import StaticMetadataProvider
from collector.options import SettingsError, parse_settings
from collector.settings import Settings


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_are_documented_values():
    settings = parse_settings([], env={})
    assert settings == Settings()
    assert (settings.server.listen_host, settings.server.listen_port) == ("0.0.0.0", 9880)
    assert settings.limits.max_body_bytes == 4 * 1024 * 1024
    assert settings.limits.max_reports_per_batch == 500
    assert settings.limits.max_pods_per_report == 2000
    assert settings.export.per_pod_series is False
    assert settings.kubernetes == "auto"


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    config = write_config(tmp_path, """
        stale-after: 100
        snapshot-interval: 30
        max-workload-series: 7
    """)
    env = {"KUBECARBON_STALE_AFTER": "200", "KUBECARBON_SNAPSHOT_INTERVAL": "40"}
    settings = parse_settings(["--config", str(config), "--stale-after", "300"], env=env)
    assert settings.export.stale_after_seconds == 300  # flag
    assert settings.state.snapshot_interval_seconds == 40  # env over file
    assert settings.export.max_workload_series == 7  # file over default
    assert settings.export.max_pod_series == 10_000  # default


def test_config_path_from_env_and_booleans(tmp_path):
    config = write_config(tmp_path, "per-pod-series: true\nlisten: 127.0.0.1:0\n")
    settings = parse_settings([], env={"KUBECARBON_CONFIG": str(config)})
    assert settings.export.per_pod_series is True
    assert (settings.server.listen_host, settings.server.listen_port) == ("127.0.0.1", 0)
    settings = parse_settings([], env={"KUBECARBON_CONFIG": str(config),
                                       "KUBECARBON_PER_POD_SERIES": "false"})
    assert settings.export.per_pod_series is False


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["--stale-after", "soon"], {}, "--stale-after"),
    (["--stale-after", "0"], {}, "--stale-after"),
    (["--listen", "9880"], {}, "--listen"),
    (["--listen", "0.0.0.0:70000"], {}, "--listen"),
    (["--kubernetes", "maybe"], {}, "--kubernetes"),
    (["--max-body-bytes", "10"], {}, "--max-body-bytes"),
    (["--per-pod-series", "perhaps"], {}, "--per-pod-series"),
    (["--min-window", "10", "--max-window", "5"], {}, "--min-window"),
    (["--stale-after", "600", "--forget-after", "300"], {}, "--forget-after"),
    (["--frobnicate"], {}, "--frobnicate"),
    ([], {"KUBECARBON_STALE_AFTER": "-5"}, "--stale-after"),
    ([], {"KUBECARBON_LOG_LEVEL": "loud"}, "--log-level"),
])
def test_bad_values_name_the_key(argv, env, named):
    with pytest.raises(SettingsError) as bad:
        parse_settings(argv, env=env)
    assert named in str(bad.value)
    assert "\n" not in str(bad.value)


@pytest.mark.parametrize(("yaml_text", "named"), [
    ("stale-after: never\n", "--stale-after"),
    ("no-such-key: 1\n", "no-such-key"),
    ("profiles: {}\n", "profiles"),
    ("profiles:\n  - {provider: aws}\n", "profiles[0].match"),
    ("profiles:\n  - {match: {node: a}, pue: 0.5}\n", "profiles[0].pue"),
    ("profiles:\n  - {match: {node: a}, site: mars}\n", "profiles[0].site"),
    ("profiles:\n  - {match: {node: a}, colour: red}\n", "profiles[0].colour"),
    ("profiles:\n  - {match: {node: a}, power_curve: {watts: [1, 2], logical_cpus: 8}}\n",
     "profiles[0].power_curve.watts"),
    ("default_profile: {pue: high}\n", "default_profile.pue"),
    ("model: {baseline_utilisation: 2}\n", "model.baseline_utilisation"),
    ("model: {uncertainty: {pue_multiplier: [1.2, 0.8]}}\n", "model.uncertainty.pue_multiplier"),
    ("model: {colour: red}\n", "model.colour"),
    ("[not, a, mapping]\n", "mapping"),
])
def test_bad_config_file_names_the_key(tmp_path, yaml_text, named):
    config = write_config(tmp_path, yaml_text)
    with pytest.raises(SettingsError) as bad:
        parse_settings(["--config", str(config)], env={})
    assert named in str(bad.value)


def test_config_file_sections_reach_the_model(tmp_path):
    config = write_config(tmp_path, """
        stale-after: 120
        profiles:
          - match: {node: "rack7-*"}
            provider: baremetal
            region: china-east
            pue: 1.3
            power_curve:
              name: two-socket-48t
              logical_cpus: 48
              watts: [60, 90, 105, 120, 135, 150, 168, 186, 205, 226, 250]
        default_profile: {region: china}
        model:
          baseline_utilisation: 0.12
          uncertainty: {baseline_utilisation: [0.1, 0.14]}
    """)
    settings = parse_settings(["--config", str(config)], env={})
    assert settings.profiles.model.baseline_utilisation == 0.12
    assert settings.profiles.model.uncertainty.baseline_utilisation.high == 0.14
    rule = settings.profiles.rules[0]
    assert rule.node_pattern == "rack7-*"
    assert rule.fields.power_curve is not None and rule.fields.power_curve.logical_cpus == 48
    assert settings.profiles.default.region == "china"


def test_main_exits_2_with_one_line(capsys):
    assert main(["--stale-after", "soon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("kubecarbon collector: error: argument --stale-after")


def test_main_refuses_an_empty_token_file(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("\n")
    assert main(["--token-file", str(token), "--kubernetes", "off"]) == 2
    assert "--token-file" in capsys.readouterr().err


def test_help_runs_through_the_dispatcher():
    done = subprocess.run([sys.executable, "-m", "kubecarbon.cli", "collector", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for flag in ("--listen", "--config", "--state-file", "--token-file", "--kubernetes",
                 "--stale-after", "--per-pod-series"):
        assert flag in done.stdout


def test_kubernetes_off_gives_the_static_provider():
    from prometheus_client import CollectorRegistry

    provider = build_metadata_provider(parse_settings(["--kubernetes", "off"], env={}),
                                       CollectorRegistry())
    assert isinstance(provider, StaticMetadataProvider)


def test_kubernetes_auto_without_credentials_falls_back_to_static(monkeypatch, tmp_path):
    from prometheus_client import CollectorRegistry

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    provider = build_metadata_provider(parse_settings([], env={}), CollectorRegistry())
    assert isinstance(provider, StaticMetadataProvider)


def test_the_documented_example_config_is_valid(tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    assert example is not None
    config = tmp_path / "collector.yaml"
    config.write_text(example.group(1))
    settings = parse_settings(["--config", str(config)], env={})
    assert settings.state.state_file == Path("/var/lib/kubecarbon/state.json")
    assert settings.export.max_workload_series == 5000
    from collector.profiles import resolve_node

    rack = resolve_node(settings.profiles, "rack7-12", None)
    assert (rack.profile.kind, rack.profile.pue, rack.profile.region) == (
        "baremetal", 1.3, "china-east")
    other = resolve_node(settings.profiles, "somewhere-else", None)
    assert (other.profile.kind, other.profile.region, other.profile.pue) == (
        "default", "china", 1.49)
    assert other.on_default_profile


def test_every_flag_is_documented():
    from collector.options import build_parser

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    flags = {option for action in build_parser()._actions for option in action.option_strings
             if option.startswith("--") and option != "--help"}
    missing = {flag for flag in flags if f"`{flag}" not in doc}
    assert not missing


def test_rightsizing_flags_reach_the_settings_and_bad_ones_stop_the_start():
    from collector.options import SettingsError, parse_settings

    settings = parse_settings(["--rightsizing-window", "86400", "--rightsizing-percentile", "95",
                               "--rightsizing-headroom", "0.2",
                               "--rightsizing-sample-interval", "300",
                               "--rightsizing-min-history", "3600",
                               "--rightsizing-max-workloads", "10"], env={})
    rightsizing = settings.rightsizing
    assert (rightsizing.window_seconds, rightsizing.percentile, rightsizing.headroom) == (
        86400.0, 95.0, 0.2)
    assert (rightsizing.samples, rightsizing.policy.min_samples) == (288, 12)
    assert rightsizing.max_workloads == 10
    for argv, message in (
        (["--rightsizing-percentile", "0"], "--rightsizing-percentile"),
        (["--rightsizing-window", "600", "--rightsizing-sample-interval", "900"],
         "--rightsizing-sample-interval: 900 is above --rightsizing-window 600"),
    ):
        try:
            parse_settings(argv, env={})
        except SettingsError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{argv} was accepted")
