"""`kubecarbon agent` flags, KUBECARBON_* variables and the YAML config file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_testkit import FIXTURES

from agent.cli import main, parse_settings
from agent.settings import AgentSettings, DeliverySettings, ServerSettings, SourceSettings

URL = ["--collector-url", "http://collector:9880"]
NOT_PEM = str(Path(__file__).resolve().parents[2] / "pyproject.toml")


def test_defaults_match_the_documented_settings():
    settings, log_level = parse_settings([*URL, "--node-name", "n1"], env={})
    assert settings == AgentSettings(
        node_name="n1",
        delivery=DeliverySettings(collector_url="http://collector:9880"),
        server=ServerSettings(listen_host="0.0.0.0", listen_port=9881),
    )
    assert log_level == "info"


def test_flag_beats_env_beats_file_beats_default(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("interval: 30\nnode-name: from-file\nlisten: 127.0.0.1:9000\nrapl: true\n")
    env = {"KUBECARBON_INTERVAL": "20", "KUBECARBON_NODE_NAME": "from-env"}
    settings, _ = parse_settings([*URL, "--config", str(config), "--interval", "10"], env=env)
    assert settings.sampler.interval_seconds == 10.0  # flag
    assert settings.node_name == "from-env"  # env over file
    assert (settings.server.listen_host, settings.server.listen_port) == ("127.0.0.1", 9000)
    assert settings.sources.rapl_enabled is True  # file over default
    settings, _ = parse_settings([*URL], env={**env, "KUBECARBON_CONFIG": str(config)})
    assert settings.sampler.interval_seconds == 20.0


def test_every_setting_has_a_flag(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    argv = [
        *URL, "--node-name", "ip-10-0-1-17.ec2.internal", "--interval", "60",
        "--host-proc", str(FIXTURES / "broken" / "proc"),
        "--host-sys", str(FIXTURES / "broken" / "sys"), "--token-file", str(token),
        "--listen", "[::1]:9999", "--rapl", "--buffer-max-reports", "100",
        "--buffer-max-bytes", "65536", "--batch-max-reports", "50", "--batch-max-bytes", "8192",
        "--request-timeout", "3", "--backoff-max", "9", "--shutdown-grace", "2", "--gzip",
    ]  # fmt: skip
    settings, _ = parse_settings(argv, env={})
    assert settings.sources == SourceSettings(
        host_proc=FIXTURES / "broken" / "proc",
        host_sys=FIXTURES / "broken" / "sys",
        rapl_enabled=True,
    )
    assert settings.delivery == DeliverySettings(
        collector_url="http://collector:9880", token_file=token, buffer_max_reports=100,
        buffer_max_bytes=65536, batch_max_reports=50, batch_max_bytes=8192,
        request_timeout_seconds=3.0, backoff_max_seconds=9.0, gzip=True,
        shutdown_grace_seconds=2.0,
    )  # fmt: skip
    assert (settings.server.listen_host, settings.server.listen_port) == ("::1", 9999)
    assert settings.node_name == "ip-10-0-1-17.ec2.internal"


@pytest.mark.parametrize(
    ("argv", "env", "config", "message"),
    [
        ([], {}, None, "the following arguments are required: --collector-url"),
        ([*URL, "--interval", "abc"], {}, None, "argument --interval: 'abc' is not a number"),
        ([*URL], {"KUBECARBON_INTERVAL": "0.5"}, None, "--interval: '0.5' is outside 1..3600"),
        ([*URL], {}, "interval: 7200\n", "argument --interval: '7200' is outside 1..3600"),
        ([*URL, "--node-name", "Bad_Name"], {}, None, "--node-name: 'Bad_Name' is not a DNS-1123"),
        (
            ["--collector-url", "collector:9880"],
            {},
            None,
            "--collector-url: 'collector:9880' is not",
        ),
        ([*URL, "--listen", "9881"], {}, None, "argument --listen: '9881' is not HOST:PORT"),
        ([*URL, "--host-proc", "/nonexistent"], {}, None, "--host-proc: '/nonexistent' is not a"),
        ([*URL, "--token-file", "/nonexistent"], {}, None, "--token-file: cannot read"),
        ([*URL, "--collector-ca-file", "/nonexistent"], {}, None,
         "--collector-ca-file: CA bundle /nonexistent: cannot read it"),
        ([*URL, "--collector-ca-file", NOT_PEM], {}, None,
         f"--collector-ca-file: CA bundle {NOT_PEM}: not PEM certificates"),
        ([*URL], {}, "intervall: 15\n", "unrecognized arguments: --intervall=15"),
        ([*URL], {}, "- just\n- a list\n", "doesn't appear to contain 'key: value' pairs"),
    ],
)
def test_a_bad_value_stops_with_one_line_naming_the_key(
    argv, env, config, message, tmp_path, capsys, monkeypatch
):
    for key in [key for key in os.environ if key.startswith("KUBECARBON_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if config is not None:
        path = tmp_path / "agent.yaml"
        path.write_text(config)
        argv = [*argv, "--config", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kubecarbon agent: error: ")
    assert message in err


def test_python_dash_m_agent_and_the_console_script_both_answer():
    console_script = str(Path(sys.executable).with_name("kubecarbon"))
    for command in ([sys.executable, "-m", "agent", "--help"], [console_script, "agent", "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        assert "--collector-url" in done.stdout and "KUBECARBON_COLLECTOR_URL" in done.stdout


@pytest.mark.parametrize(("value", "enabled"), [("true", True), ("false", False), ("1", True)])
def test_boolean_flags_from_the_environment(value, enabled):
    settings, _ = parse_settings([*URL, "--node-name", "n"], env={"KUBECARBON_RAPL": value})
    assert settings.sources.rapl_enabled is enabled


def test_the_agent_runs_without_the_collector_numpy_or_kubernetes():
    # what an install with only the `agent` extra has: those imports must fail, and don't matter
    code = (
        "import sys\n"
        "for name in ('numpy', 'kubernetes', 'collector', 'fastjsonschema'):\n"
        "    sys.modules[name] = None\n"
        "import agent.cli, agent.runtime\n"
        "from agent.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--collector-url" in done.stdout


def test_a_ca_bundle_makes_the_service_address_https_and_wants_https(tmp_path):
    from certificates import Authority, openssl_missing

    if openssl_missing():
        pytest.skip("no openssl command for a certificate")
    ca = Authority.create(tmp_path).cert
    env = {"KUBECARBON_COLLECTOR_SERVICE_HOST": "10.96.0.12",
           "KUBECARBON_COLLECTOR_SERVICE_PORT": "9880"}
    argv = ["--collector-ca-file", str(ca),
            "--collector-server-name", "kubecarbon-collector.kubecarbon.svc"]
    settings, _ = parse_settings(argv, env=env)
    assert settings.delivery.collector_url == "https://10.96.0.12:9880"
    assert settings.delivery.ca_file == ca
    assert settings.delivery.server_name == "kubecarbon-collector.kubecarbon.svc"
    assert parse_settings([], env=env)[0].delivery.collector_url == "http://10.96.0.12:9880"
    with pytest.raises(SystemExit):
        parse_settings([*URL, "--collector-ca-file", str(ca)], env={})
