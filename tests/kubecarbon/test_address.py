"""HOST:PORT: one parser and one rule for an empty host in every --listen flag."""

from __future__ import annotations

import argparse

import pytest

from agent.cli import parse_settings as parse_agent_settings
from collector.options import parse_settings as parse_collector_settings
from kubecarbon.address import HostPort, parse_host_port


@pytest.mark.parametrize(("text", "expected"), [
    ("0.0.0.0:9880", ("0.0.0.0", 9880)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("localhost:65535", ("localhost", 65535)),
    ("[::1]:9881", ("::1", 9881)),
    ("[::]:9881", ("::", 9881)),
    (":9880", ("0.0.0.0", 9880)),  # the documented rule: an empty host is every interface
])
def test_host_and_port(text, expected):
    assert parse_host_port(text) == HostPort(*expected)


@pytest.mark.parametrize("text", [
    "9880", "host:", "host:65536", "host:-1", "host:80x", "host:²", "host: 80", "",
])
def test_bad_values_are_refused_naming_the_value(text):
    with pytest.raises(argparse.ArgumentTypeError) as bad:
        parse_host_port(text)
    assert repr(text) in str(bad.value) and "HOST:PORT" in str(bad.value)


def test_both_commands_read_an_empty_host_the_same_way():
    agent, _ = parse_agent_settings(
        ["--collector-url", "http://c:9880", "--node-name", "n", "--listen", ":9881"], env={})
    collector = parse_collector_settings(["--listen", ":9880"], env={})
    assert (agent.server.listen_host, agent.server.listen_port) == ("0.0.0.0", 9881)
    assert (collector.server.listen_host, collector.server.listen_port) == ("0.0.0.0", 9880)
